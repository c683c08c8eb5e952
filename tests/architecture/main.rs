//! The architecture invariants of ARCHITECTURE.md that a machine can check, read from the sources: the layers of
//! `shared` import only the layers above them, and no environment variable is read outside `config`.
//!
//! Test modules (`#[cfg(test)] mod tests { … }` at the end of a file) are left out: a test may build whatever
//! adapter it needs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers of `shared`, from the bottom up; a module may import only its own layer and those before it.
const LAYERS: &[(&str, &[&str])] = &[
    ("domain", &["ids", "protocol", "auth", "rooms", "config", "gateway", "telemetry"]),
    ("ports", &["store", "push", "timer", "aws"]),
    (
        "adapters",
        &["store::sqlite", "store::dynamo", "store::contract", "store::faulty", "push::apigw", "timer::sqs", "testing"],
    ),
    ("handlers", &["handlers"]),
    ("edges", &["http", "cloud"]),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code: without its trailing test module, and without comments, whose links are documentation, not
/// dependencies.
fn product_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text,
    };
    code.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// `shared/src/store/dynamo/keys.rs` → `store::dynamo::keys`.
fn module_path(file: &Path, src: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src").with_extension("");
    let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    parts.into_iter().filter(|p| p != "mod" && p != "lib").collect::<Vec<_>>().join("::")
}

/// The layer of a module path: the most specific entry of [`LAYERS`] it falls under.
fn layer_of(module: &str) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (index, (_, prefixes)) in LAYERS.iter().enumerate() {
        for prefix in prefixes.iter() {
            let matches = module == *prefix || module.starts_with(&format!("{prefix}::"));
            if matches && best.is_none_or(|(_, len)| prefix.len() > len) {
                best = Some((index, prefix.len()));
            }
        }
    }
    best.map(|(index, _)| index)
}

/// Every `crate::a::b` path a file names, as `a::b` (two segments at most: enough to tell adapters apart).
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let path: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).take(2).collect();
        let lower: Vec<&str> =
            segments.into_iter().take_while(|s| s.chars().all(|c| c.is_lowercase() || c == '_')).collect();
        if !lower.is_empty() {
            found.insert(lower.join("::"));
        }
    }
    // `use crate::{a, b}` groups are rare here; read their first level too.
    for (at, _) in code.match_indices("crate::{") {
        let rest = &code[at + "crate::{".len()..];
        let group = &rest[..rest.find('}').unwrap_or(rest.len())];
        for item in group.split(',') {
            let head: String = item.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !head.is_empty() {
                found.insert(head);
            }
        }
    }
    found
}

#[test]
fn each_layer_of_shared_imports_only_the_layers_above_it() {
    let src = workspace().join("shared/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let module = module_path(file, &src);
        if module.is_empty() {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            violations.push(format!("{module} belongs to no layer; add it to LAYERS"));
            continue;
        };
        for reference in crate_references(&product_code(file)) {
            if let Some(target) = layer_of(&reference)
                && target > own
            {
                violations.push(format!("{module} ({}) imports {reference} ({})", LAYERS[own].0, LAYERS[target].0));
            }
        }
    }
    assert!(violations.is_empty(), "arrows pointing up the layers:\n{}", violations.join("\n"));
}

#[test]
fn no_environment_variable_is_read_outside_config() {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ["shared/src", "local/src", "clients/cli/src", "functions"] {
        rust_files(&root.join(dir), &mut files);
    }
    let allowed = [root.join("shared/src/config.rs"), root.join("shared/src/testing.rs")];
    let offenders: Vec<String> = files
        .iter()
        .filter(|file| !allowed.contains(file))
        .filter(|file| {
            let code = product_code(file);
            code.contains("env::var") || code.contains("env::vars")
        })
        .map(|file| file.strip_prefix(&root).unwrap_or(file).display().to_string())
        .collect();
    assert!(offenders.is_empty(), "environment read outside config: {offenders:?}");
}

#[test]
fn the_checks_see_the_layers_they_guard() {
    // A sanity check of the parsing itself, so a silent change of layout cannot make the tests above vacuous.
    assert_eq!(layer_of("store::dynamo::keys"), Some(2));
    assert_eq!(layer_of("store"), Some(1));
    assert_eq!(layer_of("handlers::chat"), Some(3));
    let refs = crate_references("use crate::store::dynamo::DynamoStore;\nuse crate::{ids, rooms::RoomPolicy};");
    assert!(refs.contains("store::dynamo") && refs.contains("ids") && refs.contains("rooms"), "{refs:?}");
}
