//! `warden policy validate|test|push`: policy-as-code checks for CI, and
//! rolling a tested bundle out to every gateway replica.

use crate::cli::{Cli, PolicyCmd};
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use warden_control::{Actor, PolicyPush};
use warden_policy::PolicyBundle;
use warden_server::{load_policy_dir, load_test_files, read_policy_dir};

/// Run DIR's test cases against `bundle`, printing each; fails unless there
/// are tests and all pass.
fn run_tests(dir: &Path, bundle: &PolicyBundle) -> Result<()> {
    let files = load_test_files(dir)?;
    if files.is_empty() {
        bail!("no test cases in {}/tests/*.toml: policies without tests cannot be trusted", dir.display());
    }
    let (mut passed, mut failed) = (0, 0);
    for (name, file) in &files {
        for r in file.run(bundle) {
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

pub async fn run(cli: &Cli, cmd: &PolicyCmd) -> Result<()> {
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
            run_tests(&dir, &load_policy_dir(&dir)?)
        }
        PolicyCmd::Push { dir, reason } => {
            let dir = dir_of(dir)?;
            let sources = read_policy_dir(&dir)?;
            let bundle = sources.load().with_context(|| format!("{} is not a valid bundle; nothing pushed", dir.display()))?;
            run_tests(&dir, &bundle).context("nothing pushed")?;
            let text = serde_json::to_string(&sources)?;
            let sha = hex::encode(Sha256::digest(text.as_bytes()));
            let cp = crate::control_plane(&crate::load_config(cli)?).await?;
            let push = PolicyPush { sources_json: &text, sha256: &sha, policy_ids: bundle.policy_ids(), reason };
            let version = cp.push_policy(&Actor::local_user(), push).await?;
            println!("policy bundle v{version} (sha256 {sha}, {} policies) pushed; every gateway on this database switches to it", bundle.len());
            Ok(())
        }
    }
}
