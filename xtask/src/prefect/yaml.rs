//! YAML exactly as Prefect reads it: PyYAML `safe_load`, i.e. YAML 1.1 scalar
//! resolution (`yes` → true, `010` → 8, `1:30` → 90, `1.10` → 1.1, timestamps),
//! anchors/aliases and `<<` merge keys, with a line/column on every node.
//!
//! yaml-rust2 only supplies events (YAML 1.2 core, no merge keys); the tree and
//! every YAML 1.1 decision are ours, so `yes` vs `"yes"` and error locations
//! survive. The parser is driven event by event (its `load` recurses, ours does
//! not). Memory is bounded by the input's shape, not only its length: the whole
//! document (aliases expanded) must fit a byte budget, checked before an alias is
//! expanded, so an alias bomb fails fast instead of eating the machine; an anchor
//! is not copied when it is defined, only when an alias expands it (by replaying
//! the anchored node's events); the indentation retry may grow the text only so much.

use std::fmt;

use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Most bytes one document may take once parsed, aliases expanded (billion laughs, and a big
/// string aliased in layers): far above any real prefect.yaml, far below the release machine's
/// memory. Counted as [`NODE_BYTES`] per node plus the text of every scalar.
pub(crate) const MAX_EXPANDED_BYTES: usize = 32 << 20;
/// What one node costs in that budget besides its text: the tree's node and its JSON copy.
const NODE_BYTES: usize = 64;
/// How much the indentation retry may add to the text (it pads continuation lines).
const MAX_RETRY_GROWTH: usize = 1 << 20;
/// Deepest nesting of sequences/mappings accepted (also bounds our recursion).
pub(crate) const MAX_DEPTH: usize = 256;

/// One YAML node with its 1-based source position (of the node's first token;
/// for an expanded alias: of the anchored node).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: NodeValue,
    pub line: usize,
    pub col: usize,
}

/// A node's value after YAML 1.1 resolution, as PyYAML `safe_load` constructs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer outside i64 (Python ints are unbounded); decimal digits with sign.
    BigInt(String),
    Float(f64),
    Str(String),
    /// A plain scalar PyYAML turns into `datetime`/`date`. Holds the ISO form
    /// pydantic's JSON dump produces (`2026-01-01T00:00:00`, `...Z`, `...+02:00`,
    /// `2026-01-01`). Distinct from `Str` because Prefect rejects it where a
    /// string is required (e.g. an unquoted `version: 2024-01-01`).
    Timestamp(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A parse failure, printed as `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

impl std::error::Error for YamlError {}

/// Something PyYAML accepts silently but that is probably a mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlWarning {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for YamlWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// A parsed file: the single document's root (Null for an empty file) and warnings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Document {
    pub root: Node,
    pub warnings: Vec<YamlWarning>,
}

/// A whole YAML file as JSON, read as PyYAML reads it: for YAML other than prefect.yaml (the
/// tests read the CI workflows with it). YAML 1.1 makes an unquoted `on:` key `true`, so it is
/// the key `"True"` here. The error is `file:line:col: message`.
pub fn to_json(file_label: &str, bytes: &[u8]) -> Result<Value, String> {
    parse(file_label, bytes)
        .map(|document| document.root.to_json())
        .map_err(|err| err.to_string())
}

/// Parse `bytes` (UTF-8, optional BOM, LF or CRLF) like `yaml.safe_load`.
/// `file_label` only appears in messages.
pub(crate) fn parse(file_label: &str, bytes: &[u8]) -> Result<Document, YamlError> {
    let err = |line: usize, col: usize, message: String| YamlError {
        file: file_label.to_string(),
        line,
        col,
        message,
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let (line, col) = position_of_byte(bytes, e.valid_up_to());
            return Err(err(
                line,
                col,
                format!(
                    "the file is not valid UTF-8 (invalid byte at offset {}); save it as UTF-8",
                    e.valid_up_to()
                ),
            ));
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match build(file_label, text) {
        Err(e) if e.message.contains("invalid indentation") => {
            // PyYAML accepts flow collections whose continuation lines are not
            // indented past their key (`k: {` ... `}` at the key's column);
            // yaml-rust2 follows the spec strictly. Retry with those lines shifted right,
            // which changes nothing else: whitespace inside flow collections is insignificant.
            match relax_flow_indentation(text, text.len() + text.len().max(MAX_RETRY_GROWTH)) {
                Some(relaxed) => build(file_label, &relaxed).map_err(|_| e),
                None => Err(e),
            }
        }
        other => other,
    }
}

fn build(file_label: &str, text: &str) -> Result<Document, YamlError> {
    let err = |line: usize, col: usize, message: String| YamlError {
        file: file_label.to_string(),
        line,
        col,
        message,
    };
    let mut builder = Builder::new(file_label, text);
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, mark) = parser.next_token().map_err(|e| {
            let (line, col, message) = describe_scan_error(e.info(), text, e.marker());
            err(line, col, message)
        })?;
        if event == Event::StreamEnd {
            break;
        }
        builder.on_event(event, mark)?;
    }
    let root = builder.finish();
    Ok(Document {
        root,
        warnings: builder.warnings,
    })
}

/// yaml-rust2's wording for the common mistakes, made actionable, at the position a person
/// looks for: (line, column, message), 1-based.
fn describe_scan_error(info: &str, text: &str, mark: &Marker) -> (usize, usize, String) {
    let (line, col) = (mark.line(), mark.col() + 1);
    if info.contains("tab") || info.contains("cannot start any token") {
        // The scanner reports the token before the tab; point at the tab itself.
        let tab = text
            .lines()
            .enumerate()
            .skip(line.saturating_sub(1))
            .find_map(|(i, l)| {
                let indent: String = l.chars().take_while(|c| c.is_whitespace()).collect();
                indent
                    .find('\t')
                    .map(|byte| (i + 1, indent[..byte].chars().count() + 1))
            });
        if let Some((tab_line, tab_col)) = tab {
            return (
                tab_line,
                tab_col,
                format!("YAML syntax error: a tab character is used for indentation; YAML needs spaces ({info})"),
            );
        }
    }
    if info.contains("unknown anchor") {
        let rest: String = text
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .chars()
            .skip(col.saturating_sub(1))
            .collect();
        if let Some(name) = rest.trim_start().strip_prefix('*') {
            let name: String = name
                .chars()
                .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
                .collect();
            return (line, col, format!("YAML syntax error: undefined alias *{name}: no anchor &{name} is defined before it"));
        }
    }
    (line, col, format!("YAML syntax error: {info}"))
}

/// Shift every line that starts inside a flow collection (`{...}` / `[...]`
/// spanning lines) to the right of the collection's opening bracket. Quotes,
/// comments and block scalars are skipped so their brackets do not count.
/// `None` when nothing needed shifting, or when the shifted text would pass
/// `max_len` bytes (a long line opening a bracket followed by many short lines
/// would otherwise multiply the file).
fn relax_flow_indentation(text: &str, max_len: usize) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 64);
    let mut changed = false;
    let mut depth = 0usize;
    let mut base_col = 0usize;
    let mut quote: Option<char> = None;
    let mut block_scalar_parent: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let content = line.trim_end_matches(['\n', '\r']);
        if let Some(parent) = block_scalar_parent {
            if content.trim().is_empty() || indent > parent {
                out.push_str(line);
                continue;
            }
            block_scalar_parent = None;
        }
        let mut pad = 0;
        if (depth > 0 || quote.is_some()) && indent <= base_col {
            pad = base_col + 1 - indent;
            changed = true;
        }
        if out.len() + pad + line.len() > max_len {
            return None;
        }
        out.push_str(&" ".repeat(pad));
        out.push_str(line);
        // Track brackets, quotes and comments on this line.
        let mut prev_sig: Option<char> = None; // previous non-space char on the line
        let mut prev: Option<char> = None;
        let mut chars = content.char_indices().peekable();
        while let Some((col, c)) = chars.next() {
            if let Some(q) = quote {
                if q == '"' && c == '\\' {
                    chars.next();
                } else if c == q {
                    if q == '\'' && chars.peek().map(|(_, n)| *n) == Some('\'') {
                        chars.next();
                    } else {
                        quote = None;
                    }
                }
                prev = Some(c);
                prev_sig = Some(c);
                continue;
            }
            let at_value_start = matches!(prev_sig, None | Some(':' | '-' | '?' | ',' | '[' | '{'))
                && prev.map_or(true, |p| {
                    p == ' ' || p == '\t' || depth > 0 || matches!(p, '[' | '{' | ',')
                });
            match c {
                '#' if prev.map_or(true, |p| p == ' ' || p == '\t') => break,
                '"' | '\'' if at_value_start => quote = Some(c),
                '[' | '{' if depth > 0 || at_value_start => {
                    if depth == 0 {
                        base_col = col;
                    }
                    depth += 1;
                }
                ']' | '}' if depth > 0 => depth -= 1,
                '|' | '>' if depth == 0 && at_value_start => block_scalar_parent = Some(indent),
                _ => {}
            }
            prev = Some(c);
            if c != ' ' && c != '\t' {
                prev_sig = Some(c);
            }
        }
    }
    changed.then_some(out)
}

fn position_of_byte(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = bytes.get(..offset).unwrap_or(bytes);
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(before.get(line_start..).unwrap_or(&[]))
        .chars()
        .count()
        + 1;
    (line, col)
}

/// A collection being built: its start position, anchor and items so far.
struct Open {
    kind: OpenKind,
    line: usize,
    col: usize,
    anchor: usize,
    items: Vec<Node>,
    /// For mappings: which keys were a plain `<<` (merge) key.
    merge_flags: Vec<bool>,
    /// Index of its start event in [`Builder::events`] and the budget spent before it.
    first_event: usize,
    spent_before: usize,
    /// Height of its tallest item (0 for scalars only).
    items_height: usize,
}

#[derive(PartialEq)]
enum OpenKind {
    Seq,
    Map,
}

/// An anchored node: where its events are (an alias replays them), its cost and height.
#[derive(Clone, Copy)]
struct Anchored {
    events: (usize, usize),
    bytes: usize,
    height: usize,
    line: usize,
}

struct Builder<'a> {
    file: &'a str,
    text: &'a str,
    stack: Vec<Open>,
    /// Every event of the source, for alias expansion (linear in the file).
    events: Vec<(Event, Marker)>,
    anchors: std::collections::HashMap<usize, Anchored>,
    root: Option<Node>,
    documents: usize,
    /// Budget spent so far (see [`MAX_EXPANDED_BYTES`]).
    spent: usize,
    /// Inside an alias expansion: the events were counted, anchored and warned about already.
    replaying: bool,
    warnings: Vec<YamlWarning>,
}

impl<'a> Builder<'a> {
    fn new(file: &'a str, text: &'a str) -> Self {
        Builder {
            file,
            text,
            stack: Vec::new(),
            events: Vec::new(),
            anchors: std::collections::HashMap::new(),
            root: None,
            documents: 0,
            spent: 0,
            replaying: false,
            warnings: Vec::new(),
        }
    }

    /// Adds `bytes` to the budget; the error names what did not fit.
    fn spend(&mut self, bytes: usize, line: usize, col: usize) -> Result<(), YamlError> {
        if self.replaying {
            return Ok(());
        }
        self.spent = self.spent.saturating_add(bytes);
        if self.spent > MAX_EXPANDED_BYTES {
            return Err(self.error(
                line,
                col,
                format!(
                    "the document is larger than {} MiB once parsed; refusing to read on",
                    MAX_EXPANDED_BYTES >> 20
                ),
            ));
        }
        Ok(())
    }

    /// The alias name written at `line`:`col` (the event carries only a number).
    fn alias_name(&self, line: usize, col: usize) -> String {
        let rest: String = self
            .text
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .chars()
            .skip(col.saturating_sub(1))
            .collect();
        let name: String = rest
            .trim_start()
            .trim_start_matches('*')
            .chars()
            .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
            .collect();
        format!("*{name}")
    }

    /// Feeds one parser event: recorded for later alias expansion, then built.
    fn on_event(&mut self, event: Event, mark: Marker) -> Result<(), YamlError> {
        let index = self.events.len();
        self.events.push((event.clone(), mark));
        self.build_event(event, mark, index)
    }

    /// Expands an alias by replaying its anchored node's events (nested aliases recurse, at
    /// most [`MAX_DEPTH`] deep since each one sits inside a collection).
    fn replay(&mut self, anchored: Anchored) -> Result<(), YamlError> {
        let was_replaying = std::mem::replace(&mut self.replaying, true);
        let mut result = Ok(());
        for index in anchored.events.0..anchored.events.1 {
            let (event, mark) = self.events[index].clone();
            result = self.build_event(event, mark, index);
            if result.is_err() {
                break;
            }
        }
        self.replaying = was_replaying;
        result
    }

    fn error(&self, line: usize, col: usize, message: impl Into<String>) -> YamlError {
        YamlError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
        }
    }

    fn finish(&mut self) -> Node {
        self.root.take().unwrap_or(Node {
            value: NodeValue::Null,
            line: 1,
            col: 1,
        })
    }

    fn build_event(&mut self, event: Event, mark: Marker, index: usize) -> Result<(), YamlError> {
        let (line, col) = (mark.line(), mark.col() + 1);
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing | Event::StreamEnd => Ok(()),
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(self.error(
                        line,
                        col,
                        "expected a single YAML document, but found another document \
                         (remove the extra `---` or split the file)",
                    ));
                }
                Ok(())
            }
            Event::Alias(id) => {
                let Some(anchored) = self.anchors.get(&id).copied() else {
                    return Err(self.error(line, col, "found undefined alias"));
                };
                if self.stack.len() + anchored.height > MAX_DEPTH {
                    return Err(self.error(
                        line,
                        col,
                        format!("YAML nesting deeper than {MAX_DEPTH} levels (through an alias)"),
                    ));
                }
                if !self.replaying && self.spent.saturating_add(anchored.bytes) > MAX_EXPANDED_BYTES
                {
                    let name = self.alias_name(line, col);
                    return Err(self.error(
                        line,
                        col,
                        format!(
                            "alias {name} (anchored at line {}, {} KiB once expanded) makes the \
                             document larger than {} MiB; refusing to expand it (is this an \
                             alias bomb?)",
                            anchored.line,
                            anchored.bytes.div_ceil(1024),
                            MAX_EXPANDED_BYTES >> 20
                        ),
                    ));
                }
                self.spend(anchored.bytes, line, col)?;
                self.replay(anchored)
            }
            Event::Scalar(text, style, anchor, tag) => {
                let is_merge_key = style == TScalarStyle::Plain && tag.is_none() && text == "<<";
                let bytes = NODE_BYTES + text.len();
                self.spend(bytes, line, col)?;
                let value = resolve_scalar(&text, style, tag.as_ref())
                    .map_err(|m| self.error(line, col, m))?;
                if anchor != 0 && !self.replaying {
                    self.anchors.insert(
                        anchor,
                        Anchored {
                            events: (index, index + 1),
                            bytes,
                            height: 0,
                            line,
                        },
                    );
                }
                self.push_node(Node { value, line, col }, is_merge_key)
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                let (kind, anchor, tag) = match event {
                    Event::SequenceStart(anchor, tag) => (OpenKind::Seq, anchor, tag),
                    Event::MappingStart(anchor, tag) => (OpenKind::Map, anchor, tag),
                    _ => return Ok(()),
                };
                check_collection_tag(tag.as_ref(), &kind).map_err(|m| self.error(line, col, m))?;
                if self.stack.len() >= MAX_DEPTH {
                    return Err(self.error(
                        line,
                        col,
                        format!("YAML nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                self.spend(NODE_BYTES, line, col)?;
                self.stack.push(Open {
                    kind,
                    line,
                    col,
                    anchor,
                    items: Vec::new(),
                    merge_flags: Vec::new(),
                    first_event: index,
                    spent_before: self.spent - if self.replaying { 0 } else { NODE_BYTES },
                    items_height: 0,
                });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(open) = self.stack.pop() else {
                    return Err(self.error(line, col, "unbalanced collection end"));
                };
                // yaml-rust2 marks a block mapping at its first `:`; the first key is where it starts.
                let (line, col) = match open.items.first() {
                    Some(first) if (first.line, first.col) < (open.line, open.col) => {
                        (first.line, first.col)
                    }
                    _ => (open.line, open.col),
                };
                let height = open.items_height + 1;
                if open.anchor != 0 && !self.replaying {
                    self.anchors.insert(
                        open.anchor,
                        Anchored {
                            events: (open.first_event, index + 1),
                            bytes: self.spent - open.spent_before,
                            height,
                            line: open.line,
                        },
                    );
                }
                let value = match open.kind {
                    OpenKind::Seq => NodeValue::Seq(open.items),
                    OpenKind::Map => {
                        NodeValue::Map(self.build_mapping(open.items, open.merge_flags)?)
                    }
                };
                let node = Node { value, line, col };
                if let Some(parent) = self.stack.last_mut() {
                    parent.items_height = parent.items_height.max(height);
                }
                self.push_node(node, false)
            }
        }
    }

    /// Attach a finished node to its parent (or make it the root).
    fn push_node(&mut self, node: Node, is_merge_key: bool) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
            }
            Some(parent) => {
                if parent.kind == OpenKind::Map {
                    // Keys sit at even positions; only keys carry the merge flag.
                    if parent.items.len() % 2 == 0 {
                        parent.merge_flags.push(is_merge_key);
                    }
                }
                parent.items.push(node);
            }
        }
        Ok(())
    }

    /// PyYAML's `flatten_mapping` + `construct_mapping`: merged pairs first (the
    /// first merge source that has a key wins), then the explicit pairs, which
    /// override merged ones; a repeated explicit key keeps the last value at the
    /// first position (Python dict semantics) and earns a warning.
    fn build_mapping(
        &mut self,
        items: Vec<Node>,
        merge_flags: Vec<bool>,
    ) -> Result<Vec<(Node, Node)>, YamlError> {
        let mut merged: Vec<(Node, Node)> = Vec::new();
        let mut explicit: Vec<(Node, Node)> = Vec::new();
        let mut iter = items.into_iter();
        let mut index = 0;
        while let Some(key) = iter.next() {
            let Some(value) = iter.next() else {
                return Err(self.error(key.line, key.col, "mapping key without a value"));
            };
            let is_merge = merge_flags.get(index).copied().unwrap_or(false);
            index += 1;
            if !is_merge {
                explicit.push((key, value));
                continue;
            }
            let sources: Vec<Node> = match value.value {
                NodeValue::Map(_) => vec![value],
                NodeValue::Seq(items) => items,
                _ => {
                    return Err(self.error(
                        value.line,
                        value.col,
                        "expected a mapping or list of mappings for merging (`<<`)",
                    ))
                }
            };
            for source in sources {
                let NodeValue::Map(pairs) = source.value else {
                    return Err(self.error(
                        source.line,
                        source.col,
                        "expected a mapping for merging (`<<`), but found something else",
                    ));
                };
                for (k, v) in pairs {
                    if !merged.iter().any(|(existing, _)| same_key(existing, &k)) {
                        merged.push((k, v));
                    }
                }
            }
        }
        let mut result = merged;
        let merged_count = result.len();
        for (key, value) in explicit {
            match result
                .iter()
                .position(|(existing, _)| same_key(existing, &key))
            {
                Some(pos) => {
                    if pos >= merged_count && !self.replaying {
                        let first_line = result[pos].0.line;
                        self.warnings.push(YamlWarning {
                            file: self.file.to_string(),
                            line: key.line,
                            col: key.col,
                            message: format!(
                                "duplicate key {} (first at line {first_line}); the last value \
                                 wins, as in Prefect",
                                key.describe_key()
                            ),
                        });
                    }
                    result[pos].1 = value;
                }
                None => result.push((key, value)),
            }
        }
        Ok(result)
    }
}

/// Key equality as a Python dict sees it (for the scalar kinds keys take).
fn same_key(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (NodeValue::Int(x), NodeValue::Float(y)) | (NodeValue::Float(y), NodeValue::Int(x)) => {
            (*x as f64) == *y
        }
        (NodeValue::Bool(x), NodeValue::Int(y)) | (NodeValue::Int(y), NodeValue::Bool(x)) => {
            i64::from(*x) == *y
        }
        (x, y) => x == y,
    }
}

fn check_collection_tag(tag: Option<&Tag>, kind: &OpenKind) -> Result<(), String> {
    let Some(tag) = tag else { return Ok(()) };
    let full = format!("{}{}", tag.handle, tag.suffix);
    match (full.as_str(), kind) {
        ("tag:yaml.org,2002:seq", OpenKind::Seq) | ("tag:yaml.org,2002:map", OpenKind::Map) => {
            Ok(())
        }
        ("!", _) => Ok(()),
        _ => Err(format!(
            "unsupported YAML tag '{}' (Prefect's safe loader cannot construct it)",
            display_tag(tag)
        )),
    }
}

fn display_tag(tag: &Tag) -> String {
    match tag.handle.as_str() {
        "tag:yaml.org,2002:" => format!("!!{}", tag.suffix),
        _ => format!("{}{}", tag.handle, tag.suffix),
    }
}

/// Resolve one scalar: quoted and block scalars are strings, plain ones go
/// through PyYAML's implicit resolvers, explicit `!!tags` are honoured.
fn resolve_scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<NodeValue, String> {
    if let Some(tag) = tag {
        let full = format!("{}{}", tag.handle, tag.suffix);
        let name = full.strip_prefix("tag:yaml.org,2002:");
        return match name {
            Some("str") => Ok(NodeValue::Str(text.to_string())),
            Some("null") => Ok(NodeValue::Null),
            Some("bool") => bool_value(text)
                .map(NodeValue::Bool)
                .ok_or_else(|| format!("invalid !!bool value {text:?}")),
            Some("int") => int_value(text).ok_or_else(|| format!("invalid !!int value {text:?}")),
            Some("float") => float_value(text)
                .or_else(|| match int_value(text) {
                    Some(NodeValue::Int(i)) => Some(i as f64),
                    _ => None,
                })
                .map(NodeValue::Float)
                .ok_or_else(|| format!("invalid !!float value {text:?}")),
            Some("timestamp") => timestamp_value(text)
                .map(NodeValue::Timestamp)
                .ok_or_else(|| format!("invalid !!timestamp value {text:?}")),
            _ if full == "!" => Ok(NodeValue::Str(text.to_string())),
            _ => Err(format!(
                "unsupported YAML tag '{}' (Prefect's safe loader cannot construct it)",
                display_tag(tag)
            )),
        };
    }
    if style != TScalarStyle::Plain {
        return Ok(NodeValue::Str(text.to_string()));
    }
    Ok(resolve_plain(text))
}

/// PyYAML's implicit resolvers (yaml/resolver.py), in its order of precedence.
pub(crate) fn resolve_plain(text: &str) -> NodeValue {
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return NodeValue::Null;
    }
    if let Some(b) = bool_value(text) {
        return NodeValue::Bool(b);
    }
    if is_yaml11_int(text) {
        if let Some(v) = int_value(text) {
            return v;
        }
    }
    if is_yaml11_float(text) {
        if let Some(f) = float_value(text) {
            return NodeValue::Float(f);
        }
    }
    if let Some(ts) = timestamp_value(text) {
        return NodeValue::Timestamp(ts);
    }
    NodeValue::Str(text.to_string())
}

fn bool_value(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn split_sign(text: &str) -> (bool, &str) {
    if let Some(rest) = text.strip_prefix('-') {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix('+') {
        (false, rest)
    } else {
        (false, text)
    }
}

fn all_chars(s: &str, f: impl Fn(char) -> bool) -> bool {
    s.chars().all(f)
}

/// `[-+]?(0b[01_]+ | 0[0-7_]+ | (0|[1-9][0-9_]*) | 0x[0-9a-fA-F_]+ | [1-9][0-9_]*(:[0-5]?[0-9])+)`
fn is_yaml11_int(text: &str) -> bool {
    let (_, body) = split_sign(text);
    if let Some(bin) = body.strip_prefix("0b") {
        return !bin.is_empty() && all_chars(bin, |c| matches!(c, '0' | '1' | '_'));
    }
    if let Some(hex) = body.strip_prefix("0x") {
        return !hex.is_empty() && all_chars(hex, |c| c.is_ascii_hexdigit() || c == '_');
    }
    if body == "0" {
        return true;
    }
    if let Some(oct) = body.strip_prefix('0') {
        return !oct.is_empty() && all_chars(oct, |c| matches!(c, '0'..='7' | '_'));
    }
    let mut parts = body.split(':');
    let first = parts.next().unwrap_or("");
    let first_ok = first.starts_with(|c: char| matches!(c, '1'..='9'))
        && all_chars(first, |c| c.is_ascii_digit() || c == '_');
    if !first_ok {
        return false;
    }
    parts.all(is_sexagesimal_part)
}

/// `[0-5]?[0-9]`
fn is_sexagesimal_part(p: &str) -> bool {
    let b = p.as_bytes();
    match b.len() {
        1 => b[0].is_ascii_digit(),
        2 => (b'0'..=b'5').contains(&b[0]) && b[1].is_ascii_digit(),
        _ => false,
    }
}

/// PyYAML's `construct_yaml_int` (underscores dropped, sign, base prefixes, base 60).
fn int_value(text: &str) -> Option<NodeValue> {
    let cleaned: String = text.chars().filter(|c| *c != '_').collect();
    let (negative, body) = split_sign(&cleaned);
    if body.is_empty() {
        return None;
    }
    let magnitude: Option<u128> = if body == "0" {
        Some(0)
    } else if let Some(bin) = body.strip_prefix("0b") {
        u128::from_str_radix(bin, 2).ok()
    } else if let Some(hex) = body.strip_prefix("0x") {
        u128::from_str_radix(hex, 16).ok()
    } else if body.starts_with('0') {
        u128::from_str_radix(body, 8).ok()
    } else if body.contains(':') {
        let mut total: u128 = 0;
        for part in body.split(':') {
            let digit: u128 = part.parse().ok()?;
            total = total.checked_mul(60)?.checked_add(digit)?;
        }
        Some(total)
    } else {
        body.parse::<u128>().ok()
    };
    match magnitude {
        Some(m) => {
            let signed = if negative { -(m as i128) } else { m as i128 };
            match i64::try_from(signed) {
                Ok(i) => Some(NodeValue::Int(i)),
                Err(_) => Some(NodeValue::BigInt(signed.to_string())),
            }
        }
        // Beyond u128: keep the digits; Python would still have an int.
        None if all_chars(body, |c| c.is_ascii_digit()) => Some(NodeValue::BigInt(format!(
            "{}{}",
            if negative { "-" } else { "" },
            body
        ))),
        None => None,
    }
}

/// ```text
/// [-+]?([0-9][0-9_]*)\.[0-9_]*([eE][-+][0-9]+)?
/// | \.[0-9][0-9_]*([eE][-+][0-9]+)?
/// | [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*
/// | [-+]?\.(inf|Inf|INF)
/// | \.(nan|NaN|NAN)
/// ```
fn is_yaml11_float(text: &str) -> bool {
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let (_, body) = split_sign(text);
    if matches!(body, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    // `.5` form: no sign allowed.
    if let Some(frac) = text.strip_prefix('.') {
        return frac.starts_with(|c: char| c.is_ascii_digit()) && digits_then_exponent(frac);
    }
    let Some(dot) = body.find('.') else {
        return false;
    };
    let (int_part, rest) = body.split_at(dot);
    let frac = &rest[1..];
    if !int_part.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    if int_part.contains(':') {
        // Sexagesimal float: no exponent.
        let mut parts = int_part.split(':');
        let first = parts.next().unwrap_or("");
        return all_chars(first, |c| c.is_ascii_digit() || c == '_')
            && parts.all(is_sexagesimal_part)
            && all_chars(frac, |c| c.is_ascii_digit() || c == '_');
    }
    all_chars(int_part, |c| c.is_ascii_digit() || c == '_') && digits_then_exponent(frac)
}

/// `[0-9_]*([eE][-+][0-9]+)?`
fn digits_then_exponent(s: &str) -> bool {
    let end = s.find(['e', 'E']).unwrap_or(s.len());
    let (digits, exp) = s.split_at(end);
    if !all_chars(digits, |c| c.is_ascii_digit() || c == '_') {
        return false;
    }
    if exp.is_empty() {
        return true;
    }
    let exp = &exp[1..];
    let Some(num) = exp.strip_prefix(['-', '+']) else {
        return false;
    };
    !num.is_empty() && all_chars(num, |c| c.is_ascii_digit())
}

/// PyYAML's `construct_yaml_float`.
fn float_value(text: &str) -> Option<f64> {
    let cleaned: String = text
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_lowercase();
    let (negative, body) = split_sign(&cleaned);
    let sign = if negative { -1.0 } else { 1.0 };
    if body == ".inf" {
        return Some(sign * f64::INFINITY);
    }
    if body == ".nan" {
        return Some(f64::NAN);
    }
    if body.contains(':') {
        let mut total = 0.0;
        for part in body.split(':') {
            total = total * 60.0 + part.parse::<f64>().ok()?;
        }
        return Some(sign * total);
    }
    // Rust rejects "1." and ".5e+3"? It accepts both; normalise a trailing dot anyway.
    let body = if body.ends_with('.') {
        format!("{body}0")
    } else {
        body.to_string()
    };
    body.parse::<f64>().ok().map(|f| sign * f)
}

/// PyYAML's timestamp resolver + `construct_yaml_timestamp`, rendered the way
/// pydantic dumps a `date`/`datetime` to JSON.
fn timestamp_value(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    // Date only: exactly YYYY-MM-DD.
    if b.len() == 10
        && digits(&b[0..4])
        && b[4] == b'-'
        && digits(&b[5..7])
        && b[7] == b'-'
        && digits(&b[8..10])
    {
        let (y, m, d) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
        valid_date(y, m, d)?;
        return Some(text.to_string());
    }
    // YYYY-M?M-D?D([Tt]|[ \t]+)H?H:MM:SS(.frac)?([ \t]*(Z|[-+]H?H(:MM)?))?
    let mut i = 0;
    let take_digits = |i: &mut usize, min: usize, max: usize| -> Option<u32> {
        let start = *i;
        while *i < b.len() && *i - start < max && b[*i].is_ascii_digit() {
            *i += 1;
        }
        if *i - start < min {
            return None;
        }
        num(&b[start..*i])
    };
    let expect = |i: &mut usize, c: u8| -> Option<()> {
        if b.get(*i) == Some(&c) {
            *i += 1;
            Some(())
        } else {
            None
        }
    };
    let year = take_digits(&mut i, 4, 4)?;
    expect(&mut i, b'-')?;
    let month = take_digits(&mut i, 1, 2)?;
    expect(&mut i, b'-')?;
    let day = take_digits(&mut i, 1, 2)?;
    match b.get(i) {
        Some(b'T') | Some(b't') => i += 1,
        Some(b' ') | Some(b'\t') => {
            while matches!(b.get(i), Some(b' ') | Some(b'\t')) {
                i += 1;
            }
        }
        _ => return None,
    }
    let hour = take_digits(&mut i, 1, 2)?;
    expect(&mut i, b':')?;
    let minute = take_digits(&mut i, 2, 2)?;
    expect(&mut i, b':')?;
    let second = take_digits(&mut i, 2, 2)?;
    let mut micros = String::new();
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = std::str::from_utf8(&b[start..i]).ok()?;
        // PyYAML keeps 6 digits (truncating), padding with zeros.
        let mut f: String = frac.chars().take(6).collect();
        while f.len() < 6 {
            f.push('0');
        }
        if f != "000000" {
            micros = format!(".{f}");
        }
    }
    while matches!(b.get(i), Some(b' ') | Some(b'\t')) {
        i += 1;
    }
    let zone = match b.get(i) {
        None => String::new(),
        Some(b'Z') => {
            i += 1;
            "Z".to_string()
        }
        Some(sign @ (b'-' | b'+')) => {
            let sign = *sign as char;
            i += 1;
            let h = take_digits(&mut i, 1, 2)?;
            let m = if b.get(i) == Some(&b':') {
                i += 1;
                take_digits(&mut i, 2, 2)?
            } else {
                0
            };
            if h == 0 && m == 0 {
                "Z".to_string()
            } else {
                format!("{sign}{h:02}:{m:02}")
            }
        }
        _ => return None,
    };
    if i != b.len() {
        return None;
    }
    valid_date(year, month, day)?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{micros}{zone}"
    ))
}

fn num(b: &[u8]) -> Option<u32> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn valid_date(y: u32, m: u32, d: u32) -> Option<()> {
    let year = i16::try_from(y).ok()?;
    let month = i8::try_from(m).ok()?;
    let day = i8::try_from(d).ok()?;
    jiff::civil::Date::new(year, month, day).ok().map(|_| ())
}

impl Node {
    /// The value as JSON, the way Prefect dumps its validated config
    /// (`model_dump(mode="json")`): mapping keys become Python `str(key)`
    /// (`1` → "1", `True` → "True", `None` → "None", `1.5` → "1.5"), NaN and
    /// infinities become null (pydantic's default), timestamps their ISO text,
    /// ints beyond i64 a u64 or (lossy) float.
    pub(crate) fn to_json(&self) -> Value {
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::BigInt(s) => match s.parse::<u64>() {
                Ok(u) => Value::from(u),
                Err(_) => s
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number),
            },
            NodeValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            NodeValue::Str(s) | NodeValue::Timestamp(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(pairs) => {
                let mut map = Map::new();
                for (k, v) in pairs {
                    map.insert(k.key_string(), v.to_json());
                }
                Value::Object(map)
            }
        }
    }

    /// Python's `str()` of a scalar key; collections get a placeholder text.
    pub(crate) fn key_string(&self) -> String {
        match &self.value {
            NodeValue::Null => "None".to_string(),
            NodeValue::Bool(true) => "True".to_string(),
            NodeValue::Bool(false) => "False".to_string(),
            NodeValue::Int(i) => i.to_string(),
            NodeValue::BigInt(s) | NodeValue::Str(s) | NodeValue::Timestamp(s) => s.clone(),
            NodeValue::Float(f) => crate::prefect::python_text::float_repr(*f),
            NodeValue::Seq(_) => "<sequence>".to_string(),
            NodeValue::Map(_) => "<mapping>".to_string(),
        }
    }

    fn describe_key(&self) -> String {
        format!("'{}'", self.key_string())
    }

    /// The value of string key `key` in a mapping node.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node and value node of string key `key` in a mapping node.
    pub(crate) fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.value {
            NodeValue::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| matches!(&k.value, NodeValue::Str(s) if s == key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    #[cfg(test)]
    /// Follow a path of mapping keys / sequence indices (`["deployments", "0",
    /// "schedules"]`) and return the node there, for error positions.
    pub(crate) fn find(&self, path: &[&str]) -> Option<&Node> {
        let mut node = self;
        for part in path {
            node = match &node.value {
                NodeValue::Map(_) => node.get(part)?,
                NodeValue::Seq(items) => items.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }

    #[cfg(test)]
    /// Line of the key (not the value) at the end of `path`; falls back to the
    /// deepest node that exists.
    pub(crate) fn line_of(&self, path: &[&str]) -> usize {
        let mut node = self;
        let mut line = self.line;
        for part in path {
            let next = match &node.value {
                NodeValue::Map(_) => node.entry(part).map(|(k, v)| (k.line, v)),
                NodeValue::Seq(items) => part
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i))
                    .map(|v| (v.line, v)),
                _ => None,
            };
            match next {
                Some((l, v)) => {
                    line = l;
                    node = v;
                }
                None => break,
            }
        }
        line
    }

    /// A short name of the node's kind for messages ("a string", "a list", ...).
    pub(crate) fn kind_name(&self) -> &'static str {
        match &self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) | NodeValue::BigInt(_) => "an integer",
            NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Timestamp(_) => "a date/time",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.value, NodeValue::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(src: &str) -> Value {
        parse("t.yaml", src.as_bytes())
            .expect("parses")
            .root
            .to_json()
    }

    fn scalar(src: &str) -> NodeValue {
        let doc = parse("t.yaml", format!("a: {src}").as_bytes()).expect("parses");
        doc.root.get("a").expect("key a").value.clone()
    }

    fn fail(src: &str) -> YamlError {
        parse("t.yaml", src.as_bytes()).expect_err("should fail")
    }

    // Every expectation below was produced by PyYAML's safe_load in the venv.
    #[test]
    fn plain_scalars_resolve_like_pyyaml() {
        use NodeValue::*;
        let cases: Vec<(&str, NodeValue)> = vec![
            ("yes", Bool(true)),
            ("Yes", Bool(true)),
            ("YES", Bool(true)),
            ("yEs", Str("yEs".into())),
            ("y", Str("y".into())),
            ("ON", Bool(true)),
            ("off", Bool(false)),
            ("No", Bool(false)),
            ("TRUE", Bool(true)),
            ("010", Int(8)),
            ("08", Str("08".into())),
            ("0o10", Str("0o10".into())),
            ("0x1F", Int(31)),
            ("0x_1", Int(1)),
            ("0b101", Int(5)),
            ("1_000", Int(1000)),
            ("1__0", Int(10)),
            ("0_7", Int(7)),
            ("1:30", Int(90)),
            ("190:20:30", Int(685230)),
            ("09:30", Str("09:30".into())),
            ("+12", Int(12)),
            ("-0", Int(0)),
            ("1.10", Float(1.1)),
            ("1.", Float(1.0)),
            ("0.", Float(0.0)),
            ("1e3", Str("1e3".into())),
            ("1.0e+3", Float(1000.0)),
            ("-.5", Str("-.5".into())),
            ("._5", Str("._5".into())),
            ("1:30.5", Float(90.5)),
            ("~", Null),
            ("Null", Null),
            ("nULL", Str("nULL".into())),
            ("0.0.1", Str("0.0.1".into())),
            ("3.x", Str("3.x".into())),
            (
                "12345678901234567890",
                BigInt("12345678901234567890".into()),
            ),
            ("!!str 12", Str("12".into())),
            ("!!int '12'", Int(12)),
            ("!!str yes", Str("yes".into())),
            ("!!float 3", Float(3.0)),
            ("'1'", Str("1".into())),
            ("\"yes\"", Str("yes".into())),
        ];
        for (src, expected) in cases {
            assert_eq!(scalar(src), expected, "scalar {src:?}");
        }
        assert_eq!(scalar(".inf"), Float(f64::INFINITY));
        assert_eq!(scalar("-.Inf"), Float(f64::NEG_INFINITY));
        assert_eq!(scalar("+.inf"), Float(f64::INFINITY));
        assert!(matches!(scalar(".NaN"), Float(f) if f.is_nan()));
        assert_eq!(
            parse("t", b"a:").unwrap().root.get("a").unwrap().value,
            Null
        );
    }

    #[test]
    fn timestamps_resolve_like_pyyaml_and_dump_like_pydantic() {
        use NodeValue::Timestamp;
        assert_eq!(scalar("2026-01-01"), Timestamp("2026-01-01".into()));
        assert_eq!(
            scalar("2026-01-01T00:00:00"),
            Timestamp("2026-01-01T00:00:00".into())
        );
        assert_eq!(
            scalar("2026-01-01 10:00:00+02:00"),
            Timestamp("2026-01-01T10:00:00+02:00".into())
        );
        assert_eq!(
            scalar("2026-1-2t3:04:05.5Z"),
            Timestamp("2026-01-02T03:04:05.500000Z".into())
        );
        assert_eq!(scalar("'2026-01-01'"), NodeValue::Str("2026-01-01".into()));
        assert_eq!(scalar("2026-13-01"), NodeValue::Str("2026-13-01".into()));
    }

    #[test]
    fn block_and_quoted_scalars_are_strings() {
        assert_eq!(
            load("a: |\n  yes\nb: >\n  10\n"),
            json!({"a": "yes\n", "b": "10\n"})
        );
    }

    #[test]
    fn merge_keys_follow_pyyaml() {
        // Earlier merge sources win; explicit keys win over merged ones; merged keys come first.
        let v = load("a: &a {x: 1, y: 1}\nb: &b {x: 2, z: 2}\nc:\n  <<: [*a, *b]\n  w: 0\n");
        assert_eq!(v["c"], json!({"x": 1, "y": 1, "z": 2, "w": 0}));
        let keys: Vec<&String> = v["c"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["x", "y", "z", "w"]);
        assert_eq!(
            load("a: &a {x: 1, y: 1}\nc:\n  x: 5\n  <<: *a\n")["c"],
            json!({"x": 5, "y": 1})
        );
        assert_eq!(
            load("a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nc: {<<: *b, z: 3}\n")["c"],
            json!({"x": 1, "y": 2, "z": 3})
        );
        assert_eq!(load("c: {'<<': {x: 1}}\n"), json!({"c": {"<<": {"x": 1}}}));
        assert_eq!(
            load("a: &a {x: 1}\nb: &b {x: 2}\nc: {<<: *a, <<: *b}\n")["c"],
            json!({"x": 1})
        );
        let e = fail("a: &a 1\nc: {<<: *a}\n");
        assert!(e.message.contains("merging"), "{e}");
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_and_warn() {
        let doc = parse("f.yaml", b"a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(doc.root.to_json(), json!({"a": 3, "b": 2}));
        let keys: Vec<String> = doc
            .root
            .to_json()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(doc.warnings.len(), 1);
        assert_eq!(doc.warnings[0].line, 3);
        assert!(doc.warnings[0]
            .to_string()
            .starts_with("f.yaml:3:1: duplicate key 'a'"));
    }

    #[test]
    fn keys_are_stringified_like_pydantic_json_dump() {
        assert_eq!(
            load("a: {2: x, null: z, 1.5: w, yes: v}\n")["a"],
            json!({"2": "x", "None": "z", "1.5": "w", "True": "v"})
        );
        // Python: True == 1, so `yes` and `1` are the same dict key (last wins).
        assert_eq!(load("a: {1: x, yes: v}\n")["a"], json!({"1": "v"}));
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = fail("a:\n\tb: 1\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("tab"), "{e}");
        let e = fail("a: 1\nb: *nope\n");
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("t.yaml:2:"), "{e}");
        assert!(
            e.message.contains("unknown anchor") || e.message.contains("undefined alias"),
            "{e}"
        );
        let e = fail("a: [1, 2\n");
        assert!(
            e.line >= 1 && e.message.starts_with("YAML syntax error"),
            "{e}"
        );
        let e = fail("a: 1\n---\nb: 2\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("single YAML document"));
        let e = fail("a: !foo bar\n");
        assert!(e.message.contains("'!foo'"), "{e}");
    }

    #[test]
    fn encodings_and_line_endings() {
        assert_eq!(
            load("\u{feff}a: 1\r\nb: yes\r\n"),
            json!({"a": 1, "b": true})
        );
        let e = parse("bad.yaml", b"a: 1\nb: \xff\xfe\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 4));
        assert!(
            e.to_string()
                .starts_with("bad.yaml:2:4: the file is not valid UTF-8"),
            "{e}"
        );
        assert_eq!(load(""), Value::Null);
        assert_eq!(load("# only a comment\n"), Value::Null);
        assert_eq!(load("---\na: 1\n"), json!({"a": 1}));
    }

    #[test]
    fn flow_collections_closed_at_the_keys_column_parse_like_pyyaml() {
        // PyYAML: {'w': {'job_variables': {'env': {'A': '/x'}}, 'q': [1, 2], 'n': 'a # {'}}
        let src = "w:\n  job_variables: {\n      \"env\": {\"A\": \"/x\"}\n  }\n  q: [1,\n  2]\n  n: 'a # {'\n";
        assert_eq!(
            load(src),
            json!({"w": {"job_variables": {"env": {"A": "/x"}}, "q": [1, 2], "n": "a # {"}})
        );
        // Block scalars and quotes with brackets are not flow collections.
        let src = "a: |\n  {\nb: '['\nc: {x: 1,\n y: 2}\n";
        assert_eq!(
            load(src),
            json!({"a": "{\n", "b": "[", "c": {"x": 1, "y": 2}})
        );
        // A real indentation error still fails.
        assert!(parse("t", b"a:\n    b: 1\n  c: 2\n").is_err());
    }

    #[test]
    fn alias_bomb_fails_fast() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            src.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                std::iter::repeat(prev.as_str())
                    .take(9)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let start = std::time::Instant::now();
        let e = fail(&src);
        assert!(e.message.contains("alias bomb"), "{e}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    /// A 1 MiB string, aliased ten times per layer (`l1` is 10 MiB, `l2` would be 100 MiB).
    fn string_aliased_in_layers() -> String {
        let mut src = format!("s: &s \"{}\"\n", "x".repeat(1 << 20));
        src.push_str(&format!("l1: &l1 [{}]\n", ["*s"; 10].join(", ")));
        src.push_str(&format!("l2: &l2 [{}]\n", ["*l1"; 10].join(", ")));
        src.push_str(&format!("l3: [{}]\n", ["*l2"; 10].join(", ")));
        src
    }

    /// 200 anchored mappings, each inside the one before, each with 1000 items of its own.
    fn nested_anchors(levels: usize) -> String {
        let pad = vec!["x"; 1000].join(", ");
        let mut src = String::from("definitions:\n");
        for level in 0..levels {
            let indent = "  ".repeat(level + 1);
            src.push_str(&format!(
                "{indent}k{level}: &a{level}\n{indent}  pad: [{pad}]\n"
            ));
        }
        src
    }

    /// A flow mapping opened at column 20 000, continued on `lines` lines at column 1: the
    /// indentation retry would pad every one of them by 20 000 spaces.
    fn retry_padding_bomb(indent: usize, lines: usize) -> String {
        let mut src = format!("a:\n{}b: {{\n", " ".repeat(indent));
        src.push_str(&"c,\n".repeat(lines));
        src.push_str("}\n");
        src
    }

    #[test]
    fn the_expanded_size_is_bounded_in_bytes_before_expanding() {
        let e = fail(&string_aliased_in_layers());
        assert_eq!((e.line, e.col), (3, 20), "{e}");
        assert!(
            e.message.starts_with("alias *l1 (anchored at line 2, 10241 KiB once expanded) makes the document larger than 32 MiB"),
            "{e}"
        );
        // Without aliases the same budget holds: a huge document is refused, not built.
        let big = format!("a: [{}]\n", vec!["yes"; 600_000].join(", "));
        let e = fail(&big);
        assert!(e.message.contains("larger than 32 MiB once parsed"), "{e}");
    }

    #[test]
    fn anchors_are_expanded_only_where_aliased_and_expand_like_copies() {
        let src = nested_anchors(40);
        let mut plain = src.clone();
        for level in 0..40 {
            plain = plain.replace(&format!(" &a{level}\n"), "\n");
        }
        assert!(!plain.contains('&'));
        let root = load(&src);
        assert_eq!(root, load(&plain));
        assert_eq!(
            root["definitions"]["k0"]["k1"]["pad"]
                .as_array()
                .unwrap()
                .len(),
            1000
        );
        // Aliases of nested anchors, merges through aliases, and positions of the anchored node.
        let src = "a: &a {b: &b [1, {c: 2}], x: 1}\nc: *a\nd: *b\ne: {<<: *a, x: 3}\n";
        let doc = parse("t.yaml", src.as_bytes()).unwrap();
        assert_eq!(
            doc.root.to_json(),
            json!({"a": {"b": [1, {"c": 2}], "x": 1}, "c": {"b": [1, {"c": 2}], "x": 1},
                   "d": [1, {"c": 2}], "e": {"b": [1, {"c": 2}], "x": 3}})
        );
        let d = doc.root.get("d").unwrap();
        assert_eq!((d.line, d.col), (1, 14));
        // A duplicate key inside an anchor is reported once, not once per alias.
        let doc = parse("t.yaml", b"a: &a {x: 1, x: 2}\nb: *a\nc: *a\n").unwrap();
        assert_eq!(doc.warnings.len(), 1, "{:?}", doc.warnings);
        assert_eq!(doc.root.to_json()["c"], json!({"x": 2}));
    }

    #[test]
    fn the_indentation_retry_is_bounded() {
        // The shape at a tenth of the size: unbounded, the padding multiplies it.
        let small = retry_padding_bomb(2_000, 1_000);
        let unbounded = relax_flow_indentation(&small, usize::MAX).unwrap();
        assert!(unbounded.len() > 2_000_000, "{}", unbounded.len());
        assert_eq!(
            relax_flow_indentation(&small, small.len() + MAX_RETRY_GROWTH),
            None
        );
        let e = fail(&retry_padding_bomb(20_000, 10_000));
        assert!(e.message.contains("indentation"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_without_stack_overflow() {
        let src = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let e = fail(&src);
        assert!(
            e.message.contains("nesting deeper") || e.message.contains("recursion limit"),
            "{e}"
        );
        // Below the parser's own limit, ours applies.
        let src = format!("a: {}{}\n", "[".repeat(300), "]".repeat(300));
        let e = fail(&src);
        assert!(
            e.message.contains("nesting deeper") || e.message.contains("recursion limit"),
            "{e}"
        );
    }

    #[test]
    fn positions_and_paths() {
        let doc = parse("t", b"deployments:\n  - name: a\n    tags:\n      - x\n").unwrap();
        let root = &doc.root;
        assert_eq!(root.line_of(&["deployments", "0", "tags"]), 3);
        assert_eq!(
            root.find(&["deployments", "0", "tags", "0"]).unwrap().line,
            4
        );
        let name = root.find(&["deployments", "0", "name"]).unwrap();
        assert_eq!((name.line, name.col), (2, 11));
    }
}
