//! `warden inspect`: scan text with the detectors the gateway uses, and
//! measure their accuracy on labelled data.

use crate::cli::InspectCmd;
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use warden_inspect::Inspector;
use warden_inspect::eval::{Counts, Report, Sample, evaluate};

/// The accuracy targets, enforced by `--check` unless `--require`
/// names others.
const TARGETS: &[&str] = &["secrets.F1>=0.95", "pii.F1>=0.95", "injection.recall>=0.90", "injection.FPR<=0.01"];

/// Secrets are judged on passwords, keys and tokens: values the labelled
/// text assigns to identifier names (CLIENT_ID, APP_ID, USERNAME) are
/// reported but left out of the target.
fn excluded(detector: &str) -> &'static [&'static str] {
    if detector == "secrets" { &["/identifier"] } else { &[] }
}

/// `DETECTOR.METRIC>=VALUE` or `DETECTOR.METRIC<=VALUE`; METRIC is F1,
/// precision, recall or FPR. `DETECTOR[TEXT].METRIC…` judges only the
/// sources whose name contains TEXT (`injection[heldout/].recall>=0.5`).
struct Target {
    detector: String,
    sources: Option<String>,
    metric: String,
    bound: f64,
    at_least: bool,
}

impl Target {
    fn parse(s: &str) -> Result<Self> {
        let bad = || {
            anyhow::anyhow!(
                "bad target {s:?}: write DETECTOR.METRIC>=VALUE or <=VALUE, e.g. secrets.F1>=0.95, injection.FPR<=0.01 or injection[heldout/].recall>=0.5"
            )
        };
        let (lhs, bound, at_least) = match (s.split_once(">="), s.split_once("<=")) {
            (Some((l, v)), None) => (l, v, true),
            (None, Some((l, v))) => (l, v, false),
            _ => return Err(bad()),
        };
        let (detector, metric) = lhs.trim().rsplit_once('.').ok_or_else(bad)?;
        if !matches!(metric, "F1" | "precision" | "recall" | "FPR") {
            return Err(bad());
        }
        let (detector, sources) = match detector.split_once('[') {
            Some((d, rest)) => (d, Some(rest.strip_suffix(']').filter(|t| !t.is_empty()).ok_or_else(bad)?.to_string())),
            None => (detector, None),
        };
        Ok(Self { detector: detector.into(), sources, metric: metric.into(), bound: bound.trim().parse().map_err(|_| bad())?, at_least })
    }

    /// The measured value, or why there is none.
    fn measure(&self, r: &Report) -> Result<f64, String> {
        let d = r.detectors.get(&self.detector).ok_or_else(|| format!("{}: no samples labelled for it in the dataset", self.detector))?;
        let picked: Vec<_> = d.sources.iter().filter(|(k, _)| self.sources.as_ref().is_none_or(|t| k.contains(t.as_str()))).collect();
        if picked.is_empty() {
            return Err(format!("{}: no source of the dataset matches [{}]", self.detector, self.sources.as_deref().unwrap_or_default()));
        }
        let c = Counts::sum(picked.into_iter(), excluded(&self.detector));
        Ok(match self.metric.as_str() {
            "F1" => c.f1(),
            "precision" => c.precision(),
            "recall" => c.recall(),
            _ => c.fpr(),
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let without = if excluded(&self.detector).is_empty() { String::new() } else { format!(" (without {})", excluded(&self.detector).join(", ")) };
        let only = self.sources.as_ref().map(|t| format!(" [sources with {t:?}]")).unwrap_or_default();
        write!(f, "{}{only}{without} {} {} {}", self.detector, self.metric, if self.at_least { ">=" } else { "<=" }, self.bound)
    }
}

pub fn run(cmd: &InspectCmd) -> Result<()> {
    match cmd {
        InspectCmd::Eval { dataset, json, check, require, examples, signals } => {
            let specs: Vec<&str> = if require.is_empty() { TARGETS.to_vec() } else { require.iter().map(String::as_str).collect() };
            let targets = if *check || !require.is_empty() { specs.into_iter().map(Target::parse).collect::<Result<Vec<_>>>()? } else { Vec::new() };
            let samples = load_all(dataset)?;
            if let Some(out) = signals {
                write_signals(&samples, out)?;
            }
            eval(&samples, *json, &targets, *examples)
        }
        InspectCmd::Scan { file } => scan(file.as_deref()),
        InspectCmd::Tools { file } => tools(file.as_deref()),
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

fn load_all(paths: &[PathBuf]) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for f in jsonl_files(paths)? {
        samples.extend(load(&f)?);
    }
    Ok(samples)
}

/// One line per injection-labelled sample: `{"id", "signals": {KIND: confidence}}`.
fn write_signals(samples: &[Sample], out: &Path) -> Result<()> {
    let ins = Inspector::default();
    let mut text = String::new();
    for s in samples.iter().filter(|s| s.injection.is_some()) {
        let line = serde_json::json!({ "id": s.id, "source": s.source, "signals": ins.rule_signals(&s.text) });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))
}

fn eval(samples: &[Sample], json: bool, targets: &[Target], examples: bool) -> Result<()> {
    let ins = Inspector::default();
    let report = evaluate(&ins, samples);
    let text = if json {
        serde_json::to_string_pretty(&report)?
    } else {
        let mut t = format!("{} labelled samples\n\n{report}", samples.len());
        if examples {
            for (name, r) in &report.detectors {
                t.push_str(&format!("\n{name}: examples\n"));
                for e in &r.examples {
                    t.push_str(&format!("  {e}\n"));
                }
            }
        }
        t
    };
    print(&text)?;
    let mut missed = Vec::new();
    for t in targets {
        match t.measure(&report) {
            Ok(v) => {
                let ok = if t.at_least { v >= t.bound } else { v <= t.bound };
                eprintln!("target {t}: {v:.4} {}", if ok { "met" } else { "MISSED" });
                if !ok {
                    missed.push(format!("{t}: measured {v:.4}"));
                }
            }
            Err(e) => missed.push(e),
        }
    }
    if !missed.is_empty() {
        bail!("accuracy targets missed:\n  {}", missed.join("\n  "));
    }
    Ok(())
}

/// Write `text` and a newline to stdout. A reader that went away
/// (`warden inspect eval … | head`) ends the output quietly instead of
/// panicking as `println!` does on a broken pipe.
fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

fn read_input(file: Option<&Path>) -> Result<String> {
    let mut text = String::new();
    match file {
        Some(f) => text = std::fs::read_to_string(f).with_context(|| format!("reading {} (it must be UTF-8 text)", f.display()))?,
        None => {
            std::io::stdin().read_to_string(&mut text).context("reading stdin (it must be UTF-8 text)")?;
        }
    }
    Ok(text)
}

fn tools(file: Option<&Path>) -> Result<()> {
    let v: serde_json::Value = serde_json::from_str(&read_input(file)?).context("the input is not JSON: give a tools/list result or an array of tools")?;
    let list = v.get("tools").unwrap_or(&v).as_array().context("expected {\"tools\": [...]} or an array of tool definitions")?;
    let ins = Inspector::default();
    let mut flagged = 0;
    let mut text = String::new();
    for def in list {
        let name = def.get("name").and_then(serde_json::Value::as_str).unwrap_or("(unnamed)");
        let scan = ins.scan_tool_definition(def, "input", &[]);
        let status = if scan.flagged() { "FLAGGED" } else { "ok" };
        text.push_str(&format!("{status:<8} {name}\n"));
        for f in &scan.findings {
            text.push_str(&format!("         {} {:.2} at {}: {}\n", f.kind, f.confidence, f.path, f.detail));
        }
        flagged += usize::from(scan.flagged());
    }
    if !text.is_empty() {
        print(text.trim_end())?;
    }
    if flagged > 0 {
        bail!("{flagged} of {} tool definitions flagged (possible tool poisoning)", list.len());
    }
    Ok(())
}

fn scan(file: Option<&Path>) -> Result<()> {
    let text = read_input(file)?;
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
    print(&serde_json::to_string_pretty(&out)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_inspect::eval::DetectorReport;

    fn report(sources: &[(&str, Counts)]) -> Report {
        let mut d = DetectorReport::default();
        for (k, c) in sources {
            d.sources.insert((*k).to_string(), *c);
        }
        let mut r = Report::default();
        r.detectors.insert("injection".into(), d);
        r
    }

    #[test]
    fn a_target_judges_the_sources_it_names() {
        let seen = Counts { tp: 9, fn_: 1, ..Default::default() };
        let unseen = Counts { tp: 1, fn_: 3, negatives: 10, negatives_flagged: 1, ..Default::default() };
        let r = report(&[("train/agentdojo", seen), ("heldout/garak", unseen)]);
        let all = Target::parse("injection.recall>=0.5").unwrap();
        assert!((all.measure(&r).unwrap() - 10.0 / 14.0).abs() < 1e-9);
        let held = Target::parse("injection[heldout/].recall>=0.5").unwrap();
        assert!((held.measure(&r).unwrap() - 0.25).abs() < 1e-9);
        assert!(held.to_string().contains("heldout/"), "{held}");
        assert!(Target::parse("injection[nothing].FPR<=0.1").unwrap().measure(&r).is_err(), "no source matches: an error, not 0");
        for bad in ["injection[].recall>=1", "injection[x.recall>=1", "injection.accuracy>=1", "injection.recall=1"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
