//! Defect 14: the declared minimum Rust version must cover what the code uses. The core needs
//! 1.89 (`File::try_lock`), set once in the workspace; every member must inherit it or declare
//! at least as much (a member that depends on the core cannot build with less, so a lower
//! figure only turns a clear "needs rustc X" into a compile error). The build with the old
//! toolchain itself is not run here (not installed).

use std::path::Path;

fn version(text: &str) -> Option<(u32, u32)> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("rust-version"))?;
    let v = line.split('"').nth(1)?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

#[test]
fn every_member_declares_at_least_the_workspace_rust_version() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let floor = version(&workspace).expect("workspace rust-version");
    assert!(
        floor >= (1, 89),
        "File::try_lock needs 1.89, workspace says {floor:?}"
    );
    let members = workspace
        .lines()
        .find(|l| l.starts_with("members"))
        .expect("workspace members");
    let mut checked = 0;
    for member in members.split('"').skip(1).step_by(2) {
        let text = std::fs::read_to_string(root.join(member).join("Cargo.toml")).unwrap();
        if text.contains("rust-version.workspace = true") {
            checked += 1;
            continue;
        }
        let own = version(&text).unwrap_or_else(|| panic!("{member}: no rust-version"));
        assert!(
            own >= floor,
            "{member}/Cargo.toml declares rust-version {own:?}, below the workspace's {floor:?}"
        );
        checked += 1;
    }
    assert!(checked >= 2, "{checked} members checked");
}
