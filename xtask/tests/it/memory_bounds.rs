//! Memory is bounded by the input's shape, not only its length (issue 12, item 3): each hostile
//! prefect.yaml below ends in a clear error while the xtask binary's peak resident memory,
//! measured on the child process (wait4, as the benchmark measures), stays well under the
//! release machine's 512 MB. A memory bound, not a timing: nothing here checks speed.

use xtask::sys::process::run_measured;

use crate::support::bin::xtask;
use crate::support::{scratch_dir, unique};

/// Far below the release machine's 512 MB; the defects reached 830 MB to 2.2 GiB.
const PEAK_BOUND_KIB: i64 = 256 * 1024;

/// Runs `register-flows --dry-run` on `yaml` (nothing listens on the API port: the run must end
/// before it reads the server) and returns the combined output and the peak RSS in KiB.
fn register_measured(label: &str, yaml: &str) -> (String, i64) {
    let dir = scratch_dir(&unique(label));
    let file = dir.join("prefect.yaml");
    std::fs::write(&file, yaml).unwrap();
    let log_path = dir.join("output.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = xtask();
    cmd.args(["register-flows", "--dry-run", "--prefect-file"])
        .arg(&file)
        .env("PREFECT_API_URL", "http://127.0.0.1:9/api")
        .env("PREFECT_HOME", dir.join("prefect-home"));
    let measured = run_measured(cmd, log).unwrap();
    let output = std::fs::read_to_string(&log_path).unwrap();
    assert!(!measured.success, "{label} should fail:\n{output}");
    eprintln!(
        "{label}: {} KiB of input, peak RSS {} KiB, {:?}",
        yaml.len() / 1024,
        measured.max_rss_kib,
        measured.wall
    );
    assert!(
        measured.max_rss_kib < PEAK_BOUND_KIB,
        "{label}: peak RSS {} KiB (bound {PEAK_BOUND_KIB} KiB)\n{output}",
        measured.max_rss_kib
    );
    assert!(!output.contains("panicked"), "{output}");
    (output, measured.max_rss_kib)
}

fn file_name(output: &str, needle: &str) {
    let line = output
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{output}"));
    assert!(
        line.contains("prefect.yaml:"),
        "the error names the file and line: {line}"
    );
}

#[test]
fn a_string_aliased_in_layers_is_refused_by_size() {
    // 1 MiB of text; expanded, 10 MiB, then 100 MiB, then 1 GiB.
    let mut yaml = format!("s: &s \"{}\"\n", "x".repeat(1 << 20));
    yaml.push_str(&format!("l1: &l1 [{}]\n", ["*s"; 10].join(", ")));
    yaml.push_str(&format!("l2: &l2 [{}]\n", ["*l1"; 10].join(", ")));
    yaml.push_str(&format!("l3: [{}]\n", ["*l2"; 10].join(", ")));
    let (output, _) = register_measured("yaml-alias-layers", &yaml);
    file_name(&output, "alias *l1 (anchored at line 2");
    assert!(output.contains("larger than 32 MiB"), "{output}");
}

#[test]
fn nested_anchors_are_not_copied_when_defined() {
    // 200 anchored mappings, each inside the one before, each with 1000 items of its own:
    // copied at definition, the copies hold ~100 times the document.
    let pad = vec!["x"; 1000].join(", ");
    let mut yaml = String::from("definitions:\n");
    for level in 0..200 {
        let indent = "  ".repeat(level + 1);
        yaml.push_str(&format!(
            "{indent}k{level}: &a{level}\n{indent}  pad: [{pad}]\n"
        ));
    }
    // Parsed within bounds, the file is then refused for what it is: no deployments list.
    yaml.push_str("deployments: 3\n");
    let (output, _) = register_measured("yaml-nested-anchors", &yaml);
    file_name(&output, "deployments");
}

#[test]
fn the_indentation_retry_pass_is_bounded() {
    // ~50 KB: a flow mapping opened at column 20 000 and continued on 10 000 lines at column 1.
    // Padding each line past the bracket would make it 200 MB.
    let mut yaml = format!("a:\n{}b: {{\n", " ".repeat(20_000));
    yaml.push_str(&"c,\n".repeat(10_000));
    yaml.push_str("}\n");
    let (output, _) = register_measured("yaml-retry-padding", &yaml);
    file_name(&output, "indentation");
}
