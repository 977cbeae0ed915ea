//! `warden inspect`: scan text with the detectors the gateway uses, and
//! measure their accuracy on labelled data.

use crate::cli::InspectCmd;
use anyhow::{Context, Result, bail};
use std::io::Read;
use std::path::{Path, PathBuf};
use warden_inspect::Inspector;
use warden_inspect::eval::{Counts, Report, Sample, evaluate};

/// The accuracy targets `--check` enforces: (detector, metric, bound, at
/// least?, sources left out). Secrets are judged on passwords, keys and
/// tokens: values the labelled text assigns to identifier names (CLIENT_ID,
/// APP_ID, USERNAME) are reported but not part of the target.
const TARGETS: &[(&str, &str, f64, bool, &[&str])] = &[
    ("secrets", "F1", 0.95, true, &["/identifier"]),
    ("pii", "F1", 0.95, true, &[]),
    ("injection", "recall", 0.90, true, &[]),
    ("injection", "FPR", 0.01, false, &[]),
];

pub fn run(cmd: &InspectCmd) -> Result<()> {
    match cmd {
        InspectCmd::Eval { dataset, json, check, examples } => eval(dataset, *json, *check, *examples),
        InspectCmd::Scan { file } => scan(file.as_deref()),
    }
}

fn jsonl_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading the directory {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            if found.is_empty() {
                bail!("{} holds no .jsonl files: build the datasets with `bash scripts/eval-data {}`", p.display(), p.display());
            }
            found.sort();
            files.extend(found);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            bail!("{} does not exist: build the datasets with `bash scripts/eval-data` (see the README)", p.display());
        }
    }
    Ok(files)
}

fn load(file: &Path) -> Result<Vec<Sample>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| {
                format!("{} line {}: not a labelled sample (expected {{\"text\", \"detectors\", \"entities\"?, \"injection\"?}})", file.display(), i + 1)
            })
        })
        .collect()
}

fn eval(paths: &[PathBuf], json: bool, check: bool, examples: bool) -> Result<()> {
    let mut samples = Vec::new();
    for f in jsonl_files(paths)? {
        samples.extend(load(&f)?);
    }
    let ins = Inspector::default();
    let report = evaluate(&ins, &samples);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{} labelled samples\n\n{report}", samples.len());
        if examples {
            for (name, r) in &report.detectors {
                println!("\n{name}: examples");
                for e in &r.examples {
                    println!("  {e}");
                }
            }
        }
    }
    if check {
        for (det, metric, bound, at_least, exclude) in TARGETS {
            if let Some(d) = report.detectors.get(*det) {
                let c = Counts::sum(d.sources.iter(), exclude);
                let v = metric_of(&c, metric);
                let without = if exclude.is_empty() { String::new() } else { format!(" (without {})", exclude.join(", ")) };
                eprintln!("target {det}{without} {metric} {v:.4} {} {bound}", if *at_least { ">=" } else { "<=" });
            }
        }
        let failed = missed_targets(&report);
        if !failed.is_empty() {
            bail!("accuracy targets missed:\n  {}", failed.join("\n  "));
        }
        eprintln!("all accuracy targets met");
    }
    Ok(())
}

fn missed_targets(r: &Report) -> Vec<String> {
    TARGETS
        .iter()
        .filter_map(|(det, metric, bound, at_least, exclude)| {
            let Some(d) = r.detectors.get(*det) else { return Some(format!("{det}: no samples labelled for it in the dataset")) };
            let c = &Counts::sum(d.sources.iter(), exclude);
            let v = metric_of(c, metric);
            let ok = if *at_least { v >= *bound } else { v <= *bound };
            (!ok).then(|| format!("{det} {metric} {v:.4} (target {} {bound})", if *at_least { ">=" } else { "<=" }))
        })
        .collect()
}

fn metric_of(c: &Counts, metric: &str) -> f64 {
    match metric {
        "F1" => c.f1(),
        "recall" => c.recall(),
        _ => c.fpr(),
    }
}

fn scan(file: Option<&Path>) -> Result<()> {
    let mut text = String::new();
    match file {
        Some(f) => text = std::fs::read_to_string(f).with_context(|| format!("reading {} (it must be UTF-8 text)", f.display()))?,
        None => {
            std::io::stdin().read_to_string(&mut text).context("reading stdin (it must be UTF-8 text)")?;
        }
    }
    let ins = Inspector::default();
    let out = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) if v.is_object() || v.is_array() => serde_json::to_value(ins.scan_json(&v))?,
        _ => {
            let s = ins.scan_text(&text);
            let findings: Vec<_> = s
                .findings
                .iter()
                .map(|f| serde_json::json!({ "detector": f.detector, "kind": f.kind, "start": f.start, "end": f.end, "confidence": f.confidence, "text": &text[f.start..f.end] }))
                .collect();
            serde_json::json!({ "findings": findings, "injection_score": (s.injection_score * 100.0).round() })
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
