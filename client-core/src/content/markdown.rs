//! Texts with mentions, as the MIMI content format writes them: a part of
//! media type `text/markdown;variant=GFM-MIMI` (GitHub-flavoured Markdown
//! as the format profiles it), in which a mention is a link whose target
//! is the person's MIMI URI: `[@Alice Smith](mimi://example.com/u/alice)`
//! (protocol §14.1.1).
//!
//! Cascade writes Markdown that says exactly the text the user typed: every
//! ASCII punctuation character is escaped with a backslash, a line break
//! is a hard break (a backslash before the newline), and spaces or tabs
//! where Markdown would drop them (at the start or end of a line) are
//! character references. What it reads is parsed as CommonMark by
//! `pulldown-cmark` and shown as plain text: emphasis and the like lose
//! their marks, a link that is not a mention shows its target after its
//! text (so a link cannot hide where it goes), and raw HTML shows as the
//! characters it is made of, never as markup.

use std::ops::Range;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use super::MAX_TEXT_BYTES;

/// The media type of a text with mentions.
pub const GFM_MIMI: &str = "text/markdown;variant=GFM-MIMI";

/// A stretch of the text that links to a MIMI URI (a mention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Octets of the text.
    pub range: Range<usize>,
    /// The target.
    pub uri: String,
}

/// Whether `content_type` is [`GFM_MIMI`]: `text/markdown` with the
/// variant `GFM-MIMI` and, if given, the charset UTF-8.
pub fn is_gfm_mimi(content_type: &str) -> bool {
    let mut params = content_type.split(';').map(str::trim);
    if !params
        .next()
        .is_some_and(|t| t.eq_ignore_ascii_case("text/markdown"))
    {
        return false;
    }
    let mut variant = false;
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            "variant" => variant = v.eq_ignore_ascii_case("GFM-MIMI"),
            "charset" if !v.eq_ignore_ascii_case("utf-8") => return false,
            _ => {}
        }
    }
    variant
}

/// The Markdown that shows `text` as it is, with `links` (in order, not
/// overlapping, on character boundaries of `text`) as links.
pub fn write(text: &str, links: &[Link]) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut at = 0;
    for link in links {
        escape(&mut out, text, at..link.range.start);
        out.push('[');
        // A mention's `@` as the draft writes it: not special inside a
        // link's text.
        let mut inside = link.range.clone();
        if text[inside.clone()].starts_with('@') {
            out.push('@');
            inside.start += 1;
        }
        escape(&mut out, text, inside);
        out.push_str("](<");
        // Inside a destination in angle brackets only `<`, `>`, `\` and
        // line breaks are special; a MIMI URI has none of them.
        for c in link.uri.chars() {
            if matches!(c, '<' | '>' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str(">)");
        at = link.range.end;
    }
    escape(&mut out, text, at..text.len());
    out
}

/// Escapes `text[range]`, knowing what comes before and after it in
/// `text` (a space is special at the start and end of a line).
fn escape(out: &mut String, text: &str, range: Range<usize>) {
    for (i, c) in text[range.clone()].char_indices() {
        let i = range.start + i;
        let line_start = i == 0 || text[..i].ends_with('\n');
        let rest = &text[i + c.len_utf8()..];
        let line_end = rest.is_empty() || rest.starts_with(['\n', '\r']);
        match c {
            c if c.is_ascii_punctuation() => {
                out.push('\\');
                out.push(c);
            }
            // A hard break; a break that ends the text would be dropped.
            '\n' if rest.is_empty() => out.push_str("&#10;"),
            '\n' => out.push_str("\\\n"),
            '\r' => out.push_str("&#13;"),
            ' ' if line_start || line_end => out.push_str("&#32;"),
            '\t' if line_start || line_end => out.push_str("&#9;"),
            _ => out.push(c),
        }
    }
}

/// The text a Markdown `source` shows, with its links to `mimi:` URIs;
/// `None` if that text is over [`MAX_TEXT_BYTES`].
pub fn read(source: &str) -> Option<(String, Vec<Link>)> {
    let mut out = String::new();
    let mut links = Vec::new();
    let mut open: Vec<(usize, String)> = Vec::new();
    let options = Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES;
    for event in Parser::new_ext(source, options) {
        match event {
            Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => {
                out.push_str(&t)
            }
            Event::InlineMath(t) | Event::DisplayMath(t) => out.push_str(&t),
            Event::SoftBreak | Event::HardBreak | Event::Rule => out.push('\n'),
            Event::TaskListMarker(done) => out.push_str(if done { "[x] " } else { "[ ] " }),
            Event::FootnoteReference(t) => {
                out.push('[');
                out.push_str(&t);
                out.push(']');
            }
            Event::Start(Tag::Link { dest_url, .. }) => open.push((out.len(), dest_url.into())),
            Event::End(TagEnd::Link) => {
                let Some((start, uri)) = open.pop() else {
                    continue;
                };
                if uri.starts_with("mimi:") {
                    links.push(Link {
                        range: start..out.len(),
                        uri,
                    });
                } else if out[start..] != *uri {
                    out.push_str(" (");
                    out.push_str(&uri);
                    out.push(')');
                }
            }
            // A new block starts on a new line.
            Event::Start(
                Tag::Paragraph
                | Tag::Heading { .. }
                | Tag::BlockQuote(_)
                | Tag::CodeBlock(_)
                | Tag::Item
                | Tag::TableRow
                | Tag::TableHead,
            ) if !out.is_empty() && !out.ends_with('\n') => out.push('\n'),
            Event::End(TagEnd::TableCell) => out.push('\t'),
            _ => {}
        }
        if out.len() > MAX_TEXT_BYTES {
            return None;
        }
    }
    // A code block's text ends with its newline.
    while out.ends_with('\n') && !source.ends_with("&#10;") {
        out.pop();
    }
    Some((out, links))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn link(range: Range<usize>, uri: &str) -> Link {
        Link {
            range,
            uri: uri.into(),
        }
    }

    #[test]
    fn the_drafts_mention_reads() {
        let (text, links) = read(
            "Kudos to [@Alice Smith](mimi://example.com/u/alice-smith) for making the release happen!",
        )
        .expect("valid");
        assert_eq!(text, "Kudos to @Alice Smith for making the release happen!");
        assert_eq!(links, vec![link(9..21, "mimi://example.com/u/alice-smith")]);
    }

    #[test]
    fn a_mention_is_written_as_a_link() {
        let text = "Thanks @Alice Smith, see *this*";
        let md = write(text, &[link(7..19, "mimi://a.example/u/alice")]);
        assert_eq!(
            md,
            r"Thanks [@Alice Smith](<mimi://a.example/u/alice>)\, see \*this\*"
        );
        assert_eq!(
            read(&md).expect("valid"),
            (text.into(), vec![link(7..19, "mimi://a.example/u/alice")])
        );
    }

    #[test]
    fn other_markdown_shows_as_its_text() {
        let (text, links) =
            read("**Bed 4** needs [obs](https://evil.example) <b>now</b>").expect("valid");
        assert_eq!(text, "Bed 4 needs obs (https://evil.example) <b>now</b>");
        assert!(links.is_empty());
        let (text, _) = read("# Handover\n\n- bed 1\n- bed 2\n\n```\ncode\n```").expect("valid");
        assert_eq!(text, "Handover\nbed 1\nbed 2\ncode");
        assert_eq!(read("<https://nhs.uk>").expect("valid").0, "https://nhs.uk");
    }

    #[test]
    fn a_link_inside_a_link_text_is_not_a_second_mention() {
        let (text, links) = read("[@A [b](mimi://x/u/b)](mimi://x/u/a)").expect("valid");
        // CommonMark allows no link inside a link: the inner one wins.
        assert_eq!(links, vec![link(4..5, "mimi://x/u/b")]);
        assert_eq!(text, "[@A b](mimi://x/u/a)");
    }

    #[test]
    fn any_text_survives_the_round_trip() {
        let alphabet: Vec<char> =
            " \t\n\r!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~aZ09é😀 \u{a0}\u{2028}#>-=*_1."
                .chars()
                .collect();
        let mut rng = StdRng::seed_from_u64(7);
        let piece = |rng: &mut StdRng| -> String {
            let len = rng.gen_range(0..20);
            (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect()
        };
        for round in 0..5000 {
            let (before, after) = (piece(&mut rng), piece(&mut rng));
            // Every other text has a mention between the two pieces.
            let (text, links) = if round % 2 == 0 {
                let name = ["@Bob", "@Dr *O'Neil*", "@[x](y)", "@"][round / 2 % 4];
                let start = before.len();
                (
                    format!("{before}{name}{after}"),
                    vec![link(start..start + name.len(), "mimi://x.example/u/bob")],
                )
            } else {
                (format!("{before}{after}"), vec![])
            };
            let md = write(&text, &links);
            let back = read(&md).expect("valid");
            assert_eq!(back, (text.clone(), links), "{text:?} written as {md:?}");
        }
    }

    #[test]
    fn the_media_type() {
        assert!(is_gfm_mimi(GFM_MIMI));
        assert!(is_gfm_mimi(
            "Text/Markdown; charset=UTF-8; variant=\"gfm-mimi\""
        ));
        assert!(!is_gfm_mimi("text/markdown"));
        assert!(!is_gfm_mimi("text/markdown;variant=GFM"));
        assert!(!is_gfm_mimi(
            "text/markdown;variant=GFM-MIMI;charset=latin1"
        ));
        assert!(!is_gfm_mimi("text/plain;variant=GFM-MIMI"));
    }

    #[test]
    fn a_text_too_long_to_show_is_refused() {
        let source = "a".repeat(MAX_TEXT_BYTES + 1);
        assert!(read(&source).is_none());
    }
}
