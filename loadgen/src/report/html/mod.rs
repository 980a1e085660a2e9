//! `report.html`: one self-contained page per result directory (a run's, a capacity search's, a
//! comparison's, an A/B's) that opens offline — the SVG pictures inlined, the styles inline, no
//! script and no external address. Built with plain strings: every text that comes from a
//! scenario or a summary goes through [`escape`].

pub mod check;
pub mod pair;
pub mod run;

use std::fmt::Write as _;

/// The page's styles, inline so that nothing is fetched.
const CSS: &str =
    "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;max-width:1900px}\
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.2rem .5rem;\
text-align:left;vertical-align:top}th{background:#f3f3f3}td.n{text-align:right}\
.verdict{padding:.5rem 1rem;font-weight:bold;display:inline-block}.pass{background:#dfd}\
.fail{background:#fdd}figure{margin:.5rem 0}figure svg{max-width:100%;height:auto}\
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1.5rem}.pair>section{min-width:0;overflow-x:auto}\
.note{color:#555}";

/// `text` with the characters that mean something in HTML replaced by entities, safe inside
/// elements and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page titled `title` around `body` (already HTML).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        escape(title)
    )
}

/// One table cell: text (escaped when written) and whether it is a number (right-aligned).
pub struct Cell {
    text: String,
    number: bool,
}

/// A text cell.
pub fn text(t: impl Into<String>) -> Cell {
    Cell {
        text: t.into(),
        number: false,
    }
}

/// A number cell, right-aligned.
pub fn num(t: impl std::fmt::Display) -> Cell {
    Cell {
        text: t.to_string(),
        number: true,
    }
}

/// A table with the header `head` and `rows`, every cell escaped.
pub fn table(head: &[&str], rows: &[Vec<Cell>]) -> String {
    let mut out = String::from("<table>\n<tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>\n");
    for row in rows {
        out.push_str("<tr>");
        for c in row {
            let class = if c.number { " class=\"n\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", escape(&c.text));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// A section headed `title` holding `body` (HTML).
pub fn section(title: &str, body: &str) -> String {
    format!("<h2>{}</h2>\n{body}\n", escape(title))
}

/// A paragraph of `t`, escaped.
pub fn para(t: &str) -> String {
    format!("<p>{}</p>\n", escape(t))
}

/// A picture this tool drew (an SVG document from plotters), inlined with its caption.
pub fn figure(svg: &str, caption: &str) -> String {
    // Only the <svg> element: a document prolog would not belong inside the page.
    let start = svg.find("<svg").unwrap_or(0);
    format!(
        "<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
        svg[start..].trim_end(),
        escape(caption)
    )
}

/// The verdict banner: `ok` green, else red.
pub fn verdict(ok: bool, line: &str) -> String {
    let class = if ok { "pass" } else { "fail" };
    format!("<div class=\"verdict {class}\">{}</div>\n", escape(line))
}

/// Microseconds as milliseconds with two decimals.
pub fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn a_page_with_a_table_is_balanced_and_escaped() {
        let body = section(
            "t<b>",
            &table(
                &["a", "b"],
                &[vec![text("<i>"), num(3)], vec![text("x"), num("4.5")]],
            ),
        );
        let html = page("<script>x</script>", &body);
        check::balanced(&html).expect("balanced");
        assert!(!html.contains("<script>") && !html.contains("<i>"));
        assert!(html.contains("<td class=\"n\">3</td>"));
        check::no_external(&html).expect("offline");
    }

    #[test]
    fn the_checker_finds_unclosed_tags_and_external_addresses() {
        assert!(check::balanced("<div><p>x</div>").is_err());
        assert!(check::balanced("<div><br><svg><path d=\"M0\"/></svg></div>").is_ok());
        assert!(check::no_external("<img src=\"https://example.com/a.png\">").is_err());
        assert!(check::no_external("<link href='http://x/y.css'>").is_err());
        assert!(check::no_external("<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>").is_ok());
    }
}
