//! The library's modules form layers, and each uses only the layers below it: no cycle, and
//! the ground truth (`reference`) and the plain data never reach up to the GPU. Read from the
//! `crate::` paths of every file under `src/`, without compiling anything.
use std::collections::BTreeSet;
use std::path::Path;

/// Bottom to top, as `src/lib.rs` documents them.
const LAYERS: [&str; 16] = [
    "interrupt",
    "error",
    "atomic",
    "shapes",
    "model",
    "data",
    "reference",
    "gpu",
    "ops",
    "network",
    "report",
    "train",
    "infer",
    "checkpoint",
    "run",
    "commands",
];

/// The top-level modules a source text names through `crate::` (grouped imports included).
fn uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let name = item.trim().split("::").next().unwrap_or("");
                    out.insert(name.trim_start_matches("self").to_string());
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
        }
    }
    out.retain(|n| !n.is_empty() && n != "Error" && n != "Result");
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut seen = BTreeSet::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if top == "main" || top == "lib" {
            continue;
        }
        let rank = LAYERS
            .iter()
            .position(|l| *l == top)
            .unwrap_or_else(|| panic!("src/{}: module {top} is in no layer", rel.display()));
        seen.insert(top.clone());
        for used in uses(&std::fs::read_to_string(&f).unwrap()) {
            match LAYERS.iter().position(|l| *l == used) {
                Some(r) if r <= rank => {}
                Some(_) => wrong.push(format!("src/{} ({top}) uses {used}", rel.display())),
                None => wrong.push(format!(
                    "src/{}: crate::{used} is in no layer",
                    rel.display()
                )),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "uses that go up a layer:\n{}",
        wrong.join("\n")
    );
    assert_eq!(
        seen.len(),
        LAYERS.len(),
        "layers without a module: {seen:?}"
    );
}

/// The scanner itself: it must see plain, grouped and nested paths, and skip comments.
#[test]
fn the_scanner_finds_crate_paths() {
    let text = "use crate::gpu::{Gpu, Tensor};\nuse crate::{atomic, report::x, Error};\n\
                let a = crate::ops::run(g);\n// crate::commands in a comment\n";
    let got: Vec<String> = uses(text).into_iter().collect();
    assert_eq!(got, ["atomic", "gpu", "ops", "report"]);
}
