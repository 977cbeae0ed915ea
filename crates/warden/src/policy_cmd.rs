//! `warden policy validate|test`: policy-as-code checks for CI.

use crate::cli::{Cli, PolicyCmd};
use anyhow::{Result, bail};
use std::path::PathBuf;
use warden_server::{load_policy_dir, load_test_files};

pub fn run(cli: &Cli, cmd: &PolicyCmd) -> Result<()> {
    let dir_of = |d: &Option<PathBuf>| -> Result<PathBuf> {
        match d {
            Some(d) => Ok(d.clone()),
            None => Ok(crate::load_config(cli)?.policy_dir),
        }
    };
    match cmd {
        PolicyCmd::Validate { dir } => {
            let dir = dir_of(dir)?;
            let bundle = load_policy_dir(&dir)?;
            println!("{}: {} policies valid against the schema", dir.display(), bundle.len());
            for id in bundle.policy_ids() {
                println!("  {id}");
            }
            Ok(())
        }
        PolicyCmd::Test { dir } => {
            let dir = dir_of(dir)?;
            let bundle = load_policy_dir(&dir)?;
            let files = load_test_files(&dir)?;
            if files.is_empty() {
                bail!("no test cases in {}/tests/*.toml: policies without tests cannot be trusted", dir.display());
            }
            let (mut passed, mut failed) = (0, 0);
            for (name, file) in &files {
                for r in file.run(&bundle) {
                    if r.passed {
                        passed += 1;
                        println!("ok    {name}: {}", r.name);
                    } else {
                        failed += 1;
                        println!("FAIL  {name}: {} — {}", r.name, r.detail.unwrap_or_default());
                    }
                }
            }
            println!("policy tests: {passed} passed, {failed} failed");
            if failed > 0 {
                bail!("{failed} policy test case(s) failed");
            }
            Ok(())
        }
    }
}
