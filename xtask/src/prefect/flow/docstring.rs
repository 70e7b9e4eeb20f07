//! Docstrings as Prefect reads them: the raw docstring of a body, `inspect.cleandoc`, and
//! griffe's Google-style parser for the per-parameter descriptions.

use std::collections::BTreeMap;

use rustpython_parser::ast::{Constant, Expr, Stmt};

/// The raw docstring of a body: a leading string-literal expression statement.
pub(super) fn docstring_of(body: &[Stmt]) -> Option<String> {
    match body.first()? {
        Stmt::Expr(e) => match e.value.as_ref() {
            Expr::Constant(c) => match &c.value {
                Constant::Str(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// `inspect.cleandoc` (Python 3.11): expand tabs, strip the first line, dedent the rest by
/// their common indentation, drop leading/trailing empty lines.
pub(super) fn cleandoc(doc: &str) -> String {
    let expanded = expand_tabs(doc);
    let mut lines: Vec<String> = expanded.split('\n').map(str::to_string).collect();
    let margin = lines
        .iter()
        .skip(1)
        .filter_map(|line| {
            let content = line.trim_start().chars().count();
            (content > 0).then(|| line.chars().count() - content)
        })
        .min();
    if let Some(first) = lines.first_mut() {
        *first = first.trim_start().to_string();
    }
    if let Some(margin) = margin {
        for line in lines.iter_mut().skip(1) {
            *line = line.chars().skip(margin).collect();
        }
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    while lines.first().is_some_and(|l| l.is_empty()) {
        lines.remove(0);
    }
    lines.join("\n")
}

/// `str.expandtabs(8)`: columns restart after `\n` and `\r`.
fn expand_tabs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut column = 0usize;
    for c in text.chars() {
        match c {
            '\t' => {
                let spaces = 8 - column % 8;
                out.push_str(&" ".repeat(spaces));
                column += spaces;
            }
            '\n' | '\r' => {
                out.push(c);
                column = 0;
            }
            c => {
                out.push(c);
                column += 1;
            }
        }
    }
    out
}

/// Prefect's `parameter_docstrings`: griffe's Google parser over `inspect.getdoc(fn)`; each
/// non-empty parameters section (`Args:`, `Arguments:`, `Params:`, `Parameters:`) replaces the
/// previous mapping.
pub(super) fn parameter_docstrings(doc: Option<&str>) -> BTreeMap<String, String> {
    let mut result = BTreeMap::new();
    let Some(doc) = doc.filter(|d| !d.is_empty()) else {
        return result;
    };
    // griffe's Docstring: inspect.cleandoc(value.rstrip()).
    let cleaned = cleandoc(doc.trim_end());
    let lines: Vec<&str> = cleaned.split('\n').collect();
    let mut offset = 0usize;
    let mut in_code_block = false;
    while offset < lines.len() {
        let line = lines[offset];
        let is_fence = line.trim_start_matches(' ').starts_with("```");
        if in_code_block {
            in_code_block = !is_fence;
        } else if is_fence {
            in_code_block = true;
        } else if let Some(title) = admonition_title(line) {
            let blank = |i: usize| lines.get(i).is_some_and(|l| is_empty_line(l));
            let blank_line_above = offset == 0 || blank(offset - 1);
            let has_next = offset + 1 < lines.len();
            let has_next_two = offset + 2 < lines.len();
            let blank_below = has_next && blank(offset + 1);
            let blank_below_two = has_next_two && blank(offset + 2);
            let indented_below = has_next && !blank_below && lines[offset + 1].starts_with(' ');
            let indented_below_two =
                has_next_two && !blank_below_two && lines[offset + 2].starts_with(' ');
            let skipped = !(indented_below || indented_below_two)
                || !blank_line_above
                || (indented_below_two && blank_below);
            if !skipped {
                let kind = section_kind(&title);
                match kind {
                    Some(SectionKind::Parameters) => {
                        let (items, next) = read_block_items(&lines, offset + 1);
                        let parameters = parse_parameter_items(&items);
                        if !parameters.is_empty() {
                            result = parameters.into_iter().collect();
                        }
                        offset = next;
                    }
                    Some(SectionKind::Examples) => {
                        offset = read_block(&lines, offset + 1);
                    }
                    Some(SectionKind::Items) => {
                        offset = read_block_items(&lines, offset + 1).1;
                    }
                    None => {
                        // An admonition ("Note:"): its block is consumed when it has content.
                        let end = read_block(&lines, offset + 1);
                        if end > offset {
                            offset = end;
                        }
                    }
                }
            }
        }
        offset += 1;
    }
    result
}

enum SectionKind {
    Parameters,
    Examples,
    /// Every other known section: read as indented items.
    Items,
}

fn section_kind(title: &str) -> Option<SectionKind> {
    match title.to_lowercase().as_str() {
        "args" | "arguments" | "params" | "parameters" => Some(SectionKind::Parameters),
        "examples" => Some(SectionKind::Examples),
        "keyword args" | "keyword arguments" | "other args" | "other arguments"
        | "other params" | "other parameters" | "type args" | "type arguments" | "type params"
        | "type parameters" | "raises" | "exceptions" | "returns" | "yields" | "receives"
        | "attributes" | "functions" | "methods" | "classes" | "type aliases" | "modules"
        | "warns" | "warnings" => Some(SectionKind::Items),
        _ => None,
    }
}

/// griffe's `_RE_ADMONITION`: `^(?P<type>[\w][\s\w-]*):(\s+(?P<title>[^\s].*))?\s*$`,
/// returning the type.
fn admonition_title(line: &str) -> Option<String> {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut chars = line.char_indices();
    let (_, first) = chars.next()?;
    if !word(first) {
        return None;
    }
    // The type is greedy over [\s\w-]; the regex backtracks to the last ':' that fits.
    let colon_positions: Vec<usize> = line.match_indices(':').map(|(i, _)| i).collect();
    for &colon in colon_positions.iter().rev() {
        let kind = &line[..colon];
        if !kind
            .chars()
            .all(|c| word(c) || c.is_whitespace() || c == '-')
        {
            continue;
        }
        let after = &line[colon + 1..];
        let valid_tail = after.trim().is_empty()
            || (after.starts_with(char::is_whitespace) && !after.trim_start().is_empty());
        if valid_tail {
            return Some(kind.to_string());
        }
    }
    None
}

fn is_empty_line(line: &str) -> bool {
    line.chars().all(char::is_whitespace)
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// griffe's `_read_block_items`: returns (items as (first line index, lines), last offset).
fn read_block_items(lines: &[&str], offset: usize) -> (Vec<Vec<String>>, usize) {
    if offset >= lines.len() {
        return (Vec::new(), offset);
    }
    let mut index = offset;
    while index < lines.len() && is_empty_line(lines[index]) {
        index += 1;
    }
    let Some(first) = lines.get(index) else {
        return (Vec::new(), index.saturating_sub(1));
    };
    let indent = indent_of(first);
    if indent == 0 {
        return (Vec::new(), index.saturating_sub(1));
    }
    let cut = |line: &str, n: usize| line.get(n..).unwrap_or("").to_string();
    let mut items = Vec::new();
    let mut current = vec![cut(first, indent)];
    index += 1;
    while index < lines.len() {
        let line = lines[index];
        if is_empty_line(line) {
            current.push(String::new());
        } else if line.starts_with(&" ".repeat(indent * 2)) {
            current.push(cut(line, indent * 2));
        } else if line.starts_with(&" ".repeat(indent + 1)) {
            current.push(cut(line, indent_of(line)));
        } else if line.starts_with(&" ".repeat(indent)) {
            items.push(std::mem::take(&mut current));
            current.push(cut(line, indent));
        } else {
            break;
        }
        index += 1;
    }
    items.push(current);
    (items, index - 1)
}

/// griffe's `_read_block`: the offset of the block's last line.
fn read_block(lines: &[&str], offset: usize) -> usize {
    if offset >= lines.len() {
        return offset.saturating_sub(1);
    }
    let mut index = offset;
    while index < lines.len() && is_empty_line(lines[index]) {
        index += 1;
    }
    let Some(first) = lines.get(index) else {
        return offset.saturating_sub(1);
    };
    let indent = indent_of(first);
    if indent == 0 {
        return offset.saturating_sub(1);
    }
    index += 1;
    let prefix = " ".repeat(indent);
    while index < lines.len() && (lines[index].starts_with(&prefix) || is_empty_line(lines[index]))
    {
        index += 1;
    }
    index - 1
}

/// griffe's `_read_parameters`: `name (type): description` items.
fn parse_parameter_items(items: &[Vec<String>]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for item in items {
        let Some((head, rest)) = item.split_first() else {
            continue;
        };
        let Some((name_with_type, first_line)) = head.split_once(':') else {
            continue;
        };
        let mut description_lines = vec![first_line.trim_start().to_string()];
        description_lines.extend(rest.iter().cloned());
        let description = description_lines
            .join("\n")
            .trim_end_matches('\n')
            .to_string();
        let name = if name_with_type.contains('(') && name_with_type.ends_with(')') {
            name_with_type
                .split_once('(')
                .map_or("", |(n, _)| n)
                .trim()
                .to_string()
        } else {
            name_with_type.to_string()
        };
        match out
            .iter_mut()
            .find(|(n, _): &&mut (String, String)| *n == name)
        {
            Some(slot) => slot.1 = description,
            None => out.push((name, description)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleandoc_matches_inspect() {
        assert_eq!(cleandoc("   "), "");
        assert_eq!(
            cleandoc("One.\n\n    Two.\n      Three.\n    "),
            "One.\n\nTwo.\n  Three."
        );
        assert_eq!(
            cleandoc("\n    Start.\n\n        Block.\n    "),
            "Start.\n\n    Block."
        );
        assert_eq!(cleandoc("a\tb\n\tc"), "a       b\nc");
    }

    #[test]
    fn griffe_parameters() {
        let doc = "Summary.\n\nArgs:\n    a (int): First.\n    b: Second\n        continued.\n    *args: Star.\n\nReturns:\n    x: y";
        let params = parameter_docstrings(Some(doc));
        assert_eq!(params.get("a").map(String::as_str), Some("First."));
        assert_eq!(
            params.get("b").map(String::as_str),
            Some("Second\ncontinued.")
        );
        assert_eq!(params.get("*args").map(String::as_str), Some("Star."));
        assert!(!params.contains_key("x"));
        // No blank line above: not a section.
        assert!(parameter_docstrings(Some("Summary.\nArgs:\n    a: A.")).is_empty());
    }
}
