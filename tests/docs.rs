//! The reference stays true to the code: every key the config loader accepts is documented
//! in its section of `docs/configuration.md`, and the README stays short, with links that
//! resolve.

/// The part of `doc` under the `##` heading that names `[section]` (or `[[section]]`).
fn section<'a>(doc: &'a str, section: &str) -> Option<&'a str> {
    let names = [format!("`[{section}]`"), format!("`[[{section}]]`")];
    let start = doc.match_indices("\n## ").map(|(i, _)| i + 1).find(|&i| {
        let line = doc[i..].lines().next().unwrap_or("");
        names.iter().any(|n| line.contains(n.as_str()))
    })?;
    let rest = &doc[start + 3..];
    let end = rest.find("\n## ").map_or(rest.len(), |e| e + 1);
    Some(&rest[..end])
}

#[test]
fn every_accepted_config_key_is_documented_in_its_section() {
    let doc = std::fs::read_to_string("docs/configuration.md").expect("docs/configuration.md");
    let mut missing = Vec::new();
    for key in larder::config::accepted_keys() {
        let (sec, name) = key.rsplit_once('.').expect("section.key");
        let documented = section(&doc, sec).is_some_and(|part| part.contains(&format!("`{name}`")));
        if !documented {
            missing.push(key);
        }
    }
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md: {missing:?}"
    );
}

#[test]
fn the_readme_is_short_and_its_links_resolve() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    assert!(
        readme.lines().count() <= 250,
        "{} lines",
        readme.lines().count()
    );
    for page in [
        "configuration",
        "operations",
        "http-semantics",
        "security",
        "performance",
        "architecture",
    ] {
        let path = format!("docs/{page}.md");
        assert!(readme.contains(&path), "README does not link {path}");
        assert!(std::path::Path::new(&path).exists(), "{path} is missing");
    }
}
