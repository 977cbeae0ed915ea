//! Reading a policy directory: `schema.cedarschema`, `*.cedar` policy files
//! and `tests/*.toml` test cases.

use std::path::{Path, PathBuf};
use warden_policy::{BundleSources, PolicyBundle, PolicyError, PolicySource, TestFile};

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|e| PolicyError::Parse { file: path.display().to_string(), message: e.to_string() })
}

fn files_with(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| PolicyError::Parse { file: dir.display().to_string(), message: format!("cannot read directory: {e}") })?;
    let mut out: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == ext)).collect();
    out.sort();
    Ok(out)
}

/// Load and validate the bundle in `dir`.
pub fn load_policy_dir(dir: &Path) -> Result<PolicyBundle, PolicyError> {
    read_policy_dir(dir)?.load()
}

/// The bundle in `dir` as text (not yet validated).
pub fn read_policy_dir(dir: &Path) -> Result<BundleSources, PolicyError> {
    let schema_path = dir.join("schema.cedarschema");
    let schema = PolicySource { name: "schema.cedarschema".into(), text: read(&schema_path)? };
    let mut files = Vec::new();
    for p in files_with(dir, "cedar")? {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        files.push(PolicySource { text: read(&p)?, name });
    }
    if files.is_empty() {
        return Err(PolicyError::Parse { file: dir.display().to_string(), message: "no *.cedar policy files (everything would be denied)".into() });
    }
    Ok(BundleSources { schema, files })
}

/// Parse `dir/tests/*.toml`.
pub fn load_test_files(dir: &Path) -> Result<Vec<(String, TestFile)>, PolicyError> {
    let tests = dir.join("tests");
    if !tests.is_dir() {
        return Ok(Vec::new());
    }
    files_with(&tests, "toml")?
        .into_iter()
        .map(|p| {
            let name = p.display().to_string();
            TestFile::parse(&name, &read(&p)?).map(|f| (name, f))
        })
        .collect()
}
