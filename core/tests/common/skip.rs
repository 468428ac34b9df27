//! The one rule for a test whose reference (an interpreter, a Python module, a
//! weights file of the set-up, a Slurm cluster) is missing, shared by every
//! test harness of the workspace (`tests/common` includes this file too).

/// Whether this is a CI run (`CI` is `true` or `1`, as `.ci/run` and
/// `scripts/test.sh` set it): the set-up installed every reference, so a
/// missing one is a broken set-up.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Under CI ([`is_ci`]) the test fails with `why`; otherwise it prints
/// `SKIPPED: why` to stderr and the caller returns early. `fix` says what
/// installs the missing reference.
pub fn skip_unless_ci(why: &str, fix: &str) {
    if is_ci() {
        panic!("{why}: CI is set, so a missing reference fails ({fix} installs it)");
    }
    eprintln!("SKIPPED: {why} ({fix} installs it)");
}
