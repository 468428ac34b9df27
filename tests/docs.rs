//! The user guide against the code. Every ` ```toml ` block of
//! `docs/src/**/*.md` and `README.md` loads with furcate's own loaders, by
//! the rules of `docs/src/reference/doc-tests.md` (includes, Cargo
//! manifests, experiments, whole run configurations, fragments merged into
//! `tests/common/doc_fragment_base.toml`); and the command reference,
//! `docs/src/reference/commands.md`, is the binary's `--help`.

use std::path::{Path, PathBuf};

use furcate_core::config::LoadedConfig;
use furcate_core::experiment::Experiment;
// Linked for its typetag registrations (`type = "ordinal"`, `type = "gaussian"`).
use furcate_heads as _;

use crate::common::{furcate, text};

/// The repository's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where every block is read as if it lay.
fn configs() -> PathBuf {
    root().join("configs")
}

/// The file name that stands for the example plugin in the guide's `plugins` lists.
const EXAMPLE_PLUGIN: &str = "libfurcate_plugin_example.so";

/// One ` ```toml ` block: its Markdown file, the line of its opening fence, its text.
#[derive(Debug)]
struct Block {
    file: PathBuf,
    line: usize,
    text: String,
}

impl Block {
    /// `docs/src/x.md line 12`, relative to the repository.
    fn at(&self) -> String {
        let file = self.file.strip_prefix(root()).unwrap_or(&self.file);
        format!("{} line {}", file.display(), self.line)
    }
}

/// `README.md` and every Markdown file under `docs/src`, sorted.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("docs/src"), &mut files);
    files.sort();
    files.insert(0, root().join("README.md"));
    files
}

/// The ` ```toml ` blocks of Markdown `text` (fences may be indented, as in
/// a list; the fence's indentation is taken off the block's lines).
fn toml_blocks(file: &Path, text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, usize, Vec<&str>)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None if trimmed.starts_with("```") => {
                let info = trimmed.trim_start_matches('`').trim();
                let lang = info.split([',', ' ']).next().unwrap_or("");
                open = Some((i + 1, indent, Vec::new()));
                if lang != "toml" {
                    // Another language: skip to its closing fence.
                    open.as_mut().unwrap().0 = 0;
                }
            }
            None => {}
            Some((start, _, lines)) if trimmed.starts_with("```") => {
                if *start > 0 {
                    blocks.push(Block {
                        file: file.to_path_buf(),
                        line: *start,
                        text: lines.join("\n") + "\n",
                    });
                }
                open = None;
            }
            Some((_, indent, lines)) => lines.push(line.get(*indent..).unwrap_or(trimmed)),
        }
    }
    assert!(open.is_none(), "{}: a code block is never closed", file.display());
    blocks
}

/// What a block (or an included file) is, by the rules of doc-tests.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cargo,
    Experiment,
    Simulation,
    Generator,
    Run,
    Fragment,
}

fn kind(text: &str, table: &toml::Table) -> Kind {
    let has = |k: &str| table.contains_key(k);
    if text.lines().next().is_some_and(|l| l.trim() == "# Cargo.toml") {
        Kind::Cargo
    } else if has("strategies") {
        Kind::Simulation
    } else if has("base") || has("sweep") {
        Kind::Experiment
    } else if has("morphologies") || has("images_per_class") || has("volume_fractions") {
        Kind::Generator
    } else if has("data") && has("extractor") && has("heads") {
        Kind::Run
    } else {
        Kind::Fragment
    }
}

/// `{{#include PATH}}` as a block's only line: PATH.
fn include(text: &str) -> Option<&str> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let only = lines.next()?.trim();
    if lines.next().is_some() {
        return None;
    }
    only.strip_prefix("{{#include ")?.strip_suffix("}}").map(str::trim)
}

/// `plugins` entries named [`EXAMPLE_PLUGIN`] pointed at the example plugin this test built.
fn with_example_plugin(table: &mut toml::Table) {
    let Some(toml::Value::Array(list)) = table.get_mut("plugins") else { return };
    for entry in list {
        if let toml::Value::String(p) = entry {
            if Path::new(p.as_str()).file_name().is_some_and(|n| n == EXAMPLE_PLUGIN) {
                *p = crate::plugins::plugins().0.display().to_string();
            }
        }
    }
}

/// Loads a block's text (or an included file's, `file` then being where
/// it lies), or says why it does not load.
fn load(text: &str, file: Option<&Path>) -> Result<Kind, String> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| format!("not TOML: {e}"))?;
    let kind = kind(text, &table);
    let at = |name: &str| file.map(Path::to_path_buf).unwrap_or_else(|| configs().join(name));
    let result = match kind {
        Kind::Cargo => match table.contains_key("package") {
            true => Ok(()),
            false => Err("a `# Cargo.toml` block has no [package]".to_string()),
        },
        // A `furcate suggest --simulate` file: its keys (the base run config
        // is checked with configs/thesis/active.toml in core's suggest tests).
        Kind::Simulation => toml::from_str::<furcate_core::suggest::simulate::SimulationConfig>(text)
            .map(drop)
            .map_err(|e| e.to_string()),
        Kind::Generator => furcate_synth::SynthConfig::from_toml_str(text, &at("generator.toml"))
            .map(drop)
            .map_err(|e| e.to_string()),
        Kind::Experiment => match file {
            Some(file) => Experiment::from_file(file).map(drop).map_err(|e| e.to_string()),
            None => {
                // `base` from configs/ (default: configs/default.toml), the block in a file of its own.
                let base = table.get("base").and_then(|b| b.as_str()).unwrap_or("default.toml");
                let base = configs().join(base).display().to_string();
                table.insert("base".into(), toml::Value::String(base));
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("experiment.toml");
                std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
                Experiment::from_file(&path).map(drop).map_err(|e| e.to_string())
            }
        },
        Kind::Run | Kind::Fragment => {
            if kind == Kind::Fragment {
                let base = std::fs::read_to_string(fragment_base()).unwrap();
                let mut merged: toml::Table = toml::from_str(&base).unwrap();
                merged.extend(table);
                table = merged;
            }
            with_example_plugin(&mut table);
            let text = toml::to_string(&table).unwrap();
            let path = at("run.toml");
            let shown = format!("{}: ", path.display());
            LoadedConfig::from_str(&text, &path).map(drop).map_err(|e| e.to_string().replacen(&shown, "", 1))
        }
    };
    result.map(|()| kind)
}

fn fragment_base() -> PathBuf {
    root().join("tests/common/doc_fragment_base.toml")
}

/// Checks one block: an include loads its file, anything else its text.
fn check(block: &Block) -> Result<Kind, String> {
    if let Some(path) = include(&block.text) {
        if path.contains(':') {
            return Err(format!("{{{{#include {path}}}}}: only whole files are included"));
        }
        let file = block.file.parent().unwrap().join(path);
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        return load(&text, Some(&file));
    }
    if block.text.contains("{{#include") {
        return Err("an include must be its block's only line".into());
    }
    load(&block.text, None)
}

#[test]
fn every_toml_block_of_the_guide_loads() {
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for block in toml_blocks(&file, &text) {
            match check(&block) {
                Ok(kind) => checked.push(kind),
                Err(e) => failures.push(format!("{}: {e}", block.at())),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} TOML block(s) of the guide do not load:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The guide has examples of every kind the rules know.
    for kind in [Kind::Cargo, Kind::Experiment, Kind::Generator, Kind::Run, Kind::Fragment] {
        assert!(checked.contains(&kind), "no {kind:?} block was checked: {checked:?}");
    }
}

#[test]
fn a_bad_block_is_named_by_its_file_and_line() {
    let file = root().join("docs/src/example.md");
    let md = "# x\n\ntext\n\n```toml\n[training]\noptimiser = \"lbfgs\"\n```\n\n```sh\nls\n```\n\n```toml\n{{#include ../../configs/default.toml}}\n```\n";
    let blocks = toml_blocks(&file, md);
    assert_eq!(blocks.iter().map(|b| b.line).collect::<Vec<_>>(), [5, 14]);
    assert_eq!(blocks[0].at(), "docs/src/example.md line 5");
    let e = check(&blocks[0]).unwrap_err();
    assert!(e.contains("optimiser"), "{e}");
    assert_eq!(check(&blocks[1]), Ok(Kind::Run));
    // A fragment replaces the base's table whole: [data] with `folders` loads.
    assert_eq!(load("[data]\nfolders = \"images\"\n", None), Ok(Kind::Fragment));
    let missing = Block { file, line: 1, text: "{{#include ../../configs/missing.toml}}\n".into() };
    assert!(check(&missing).unwrap_err().contains("missing.toml"));
}

/// `furcate ARGS... --help`.
fn help(args: &[&str]) -> String {
    // OMP_WAIT_POLICY set: the binary does not start itself again to set it.
    let o =
        furcate().args(args).arg("--help").env_remove("COLUMNS").env("OMP_WAIT_POLICY", "PASSIVE").output();
    let o = o.unwrap();
    assert!(o.status.success(), "furcate {} --help: {}", args.join(" "), text(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// The commands a help text lists under `Commands:`, less `help`.
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

/// The command reference as the binary's help makes it: `furcate`, then
/// each command and each of its own commands, in the help's order.
fn command_reference() -> String {
    let top = help(&[]);
    // Each command's help, and its sub-commands' (asked for side by side).
    let pages: Vec<Vec<(String, String)>> = std::thread::scope(|s| {
        let handles: Vec<_> = commands(&top)
            .into_iter()
            .map(|c| {
                s.spawn(move || {
                    let h = help(&[c.as_str()]);
                    let mut pages = vec![(c.clone(), h.clone())];
                    for sub in commands(&h) {
                        pages.push((format!("{c} {sub}"), help(&[c.as_str(), sub.as_str()])));
                    }
                    pages
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut out = String::from(
        "# Commands\n\nEvery command and flag, as `furcate --help` and `furcate COMMAND --help` print them \
         (generated: `FURCATE_BLESS=1 cargo test --test tests docs::command_reference_is_current` \
         rewrites this page; the test fails when it differs from the binary). The global flags \
         (`-v`, `-q`, `--threads`) work with every command; see \
         [Getting started](../getting-started.md#how-every-command-behaves).\n",
    );
    let section = |out: &mut String, name: &str, help: &str| {
        out.push_str(&format!("\n## `{name}`\n\n```text\n{help}```\n"));
    };
    section(&mut out, "furcate", &top);
    for (name, h) in pages.iter().flatten() {
        section(&mut out, &format!("furcate {name}"), h);
    }
    out
}

#[test]
fn command_reference_is_current() {
    let path = root().join("docs/src/reference/commands.md");
    let made = command_reference();
    if std::env::var_os("FURCATE_BLESS").is_some() {
        std::fs::write(&path, &made).unwrap();
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == made,
        "{} is not the binary's help; rewrite it with FURCATE_BLESS=1 cargo test --test tests docs::command_reference_is_current",
        path.display()
    );
}
