//! Checks of a generated page, for the tests and CI: every element opened is closed in order
//! ([`balanced`]), and nothing would be fetched from elsewhere ([`no_external`]), so that a
//! `report.html` opens offline and whole.

/// Elements that have no closing tag.
const VOID: [&str; 6] = ["meta", "br", "hr", "img", "input", "link"];

/// Elements whose content is raw text, not markup.
const RAW: [&str; 2] = ["style", "script"];

/// Why a page failed a check.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("at byte {at}: {what}")]
pub struct PageError {
    /// Where.
    pub at: usize,
    /// What is wrong.
    pub what: String,
}

fn fail(at: usize, what: impl Into<String>) -> PageError {
    PageError {
        at,
        what: what.into(),
    }
}

/// The end of the tag that starts at `at` (the index of its `>`), quotes respected.
fn tag_end(html: &str, at: usize) -> Option<usize> {
    let mut quote = None;
    for (i, c) in html[at..].char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(at + i),
            _ => {}
        }
    }
    None
}

/// Every opened element is closed, in order (void elements and `<x/>` stand alone; comments,
/// the doctype and the raw text of `<style>` are skipped).
pub fn balanced(html: &str) -> Result<(), PageError> {
    let mut open: Vec<String> = Vec::new();
    let mut at = 0;
    while let Some(i) = html[at..].find('<').map(|i| at + i) {
        if html[i..].starts_with("<!--") {
            at = html[i..]
                .find("-->")
                .map(|j| i + j + 3)
                .ok_or_else(|| fail(i, "open comment"))?;
            continue;
        }
        let end = tag_end(html, i).ok_or_else(|| fail(i, "unterminated tag"))?;
        let tag = &html[i + 1..end];
        at = end + 1;
        if tag.starts_with('!') || tag.starts_with('?') {
            continue;
        }
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() {
            return Err(fail(i, format!("not a tag: <{tag}>")));
        }
        if tag.starts_with('/') {
            match open.pop() {
                Some(top) if top == name => continue,
                top => return Err(fail(i, format!("</{name}> closes {top:?}"))),
            }
        }
        if tag.ends_with('/') || VOID.contains(&name.as_str()) {
            continue;
        }
        if RAW.contains(&name.as_str()) {
            let close = format!("</{name}");
            at = html[at..]
                .find(&close)
                .map(|j| at + j)
                .ok_or_else(|| fail(i, "unclosed raw text"))?;
        }
        open.push(name);
    }
    match open.last() {
        Some(top) => Err(fail(html.len(), format!("<{top}> never closed"))),
        None => Ok(()),
    }
}

/// No address of another site anywhere: the only `http(s)://` allowed is an XML namespace name
/// (`http://www.w3.org/...`), which names and never fetches.
pub fn no_external(html: &str) -> Result<(), PageError> {
    for scheme in ["http://", "https://"] {
        for (i, _) in html.match_indices(scheme) {
            if !html[i + scheme.len()..].starts_with("www.w3.org/") {
                let shown: String = html[i..].chars().take(60).collect();
                return Err(fail(i, format!("external address {shown}")));
            }
        }
    }
    Ok(())
}
