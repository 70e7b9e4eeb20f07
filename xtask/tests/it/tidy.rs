//! Repository hygiene that a reviewer should not have to check by eye.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Every module says what it is for in its first line, so `lib.rs` and docs/architecture.md can
/// stay short and a newcomer can read the tree.
#[test]
fn every_module_starts_with_a_doc_comment() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests"] {
        rust_files(&crate_dir.join(dir), &mut files);
    }
    assert!(
        files.len() > 20,
        "found only {} files under {}",
        files.len(),
        crate_dir.display()
    );
    let undocumented: Vec<String> = files
        .iter()
        .filter(|path| !path.components().any(|c| c.as_os_str() == "fixtures"))
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let first = text
                .lines()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("");
            !first.starts_with("//!") || first.trim_start_matches("//!").trim().is_empty()
        })
        .map(|path| {
            path.strip_prefix(crate_dir)
                .unwrap_or(path)
                .display()
                .to_string()
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "these files do not start with a one-line `//!` doc comment: {undocumented:?}"
    );
}
