//! [`TopicTrie`]: the binding patterns of one exchange as a trie of words, the index
//! RabbitMQ's topic exchange routes with. A publish walks the words of its routing key down
//! the trie instead of matching every binding in turn, so its cost depends on the words of
//! the key and on the wildcards that can match them, not on the number of bindings.
//!
//! The trie matches exactly as [`BindingPattern::matches`] does (a property test checks it):
//! `*` is exactly one word, `#` zero or more, the empty key has zero words and `a..b` has an
//! empty middle word (which only a wildcard matches).

#![cfg_attr(not(feature = "runtime"), allow(dead_code))]

use rustc_hash::FxHashMap;

use super::BindingPattern;

/// Index of a node in the arena.
type NodeId = u32;

const ROOT: NodeId = 0;

/// Up to this many literal children a node compares words in turn; beyond, it hashes them.
const FEW_LITERALS: usize = 8;

/// The children of a node by literal word (as bytes: a key's words need no UTF-8 check).
enum Literals {
    Few(Vec<(Box<[u8]>, NodeId)>),
    Many(FxHashMap<Box<[u8]>, NodeId>),
}

impl Literals {
    fn get(&self, word: &[u8]) -> Option<NodeId> {
        match self {
            Self::Few(few) => few
                .iter()
                .find(|(literal, _)| **literal == *word)
                .map(|&(_, id)| id),
            Self::Many(many) => many.get(word).copied(),
        }
    }

    fn insert(&mut self, word: &[u8], id: NodeId) {
        match self {
            Self::Few(few) if few.len() < FEW_LITERALS => few.push((word.into(), id)),
            Self::Few(few) => {
                let mut many: FxHashMap<Box<[u8]>, NodeId> = few.drain(..).collect();
                many.insert(word.into(), id);
                *self = Self::Many(many);
            }
            Self::Many(many) => {
                many.insert(word.into(), id);
            }
        }
    }

    fn remove(&mut self, word: &[u8]) {
        match self {
            Self::Few(few) => few.retain(|(literal, _)| **literal != *word),
            Self::Many(many) => {
                many.remove(word);
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::Few(few) => few.is_empty(),
            Self::Many(many) => many.is_empty(),
        }
    }
}

struct Node<T> {
    /// Children by literal word.
    literals: Literals,
    /// The child for `*`.
    star: Option<NodeId>,
    /// The child for `#`.
    hash: Option<NodeId>,
    /// The values bound with a pattern that ends at this node.
    values: Vec<T>,
    /// Whether this node is a `#` node below another `#`: only those can be entered more
    /// than once per match, and only their entries are remembered.
    nested_hash: bool,
    /// Whether this node or one of its ancestors is a `#` node.
    under_hash: bool,
}

impl<T> Node<T> {
    fn new(nested_hash: bool, under_hash: bool) -> Self {
        Self {
            literals: Literals::Few(Vec::new()),
            star: None,
            hash: None,
            values: Vec::new(),
            nested_hash,
            under_hash,
        }
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.literals.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }
}

/// One word of a pattern as the trie stores it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Edge<'a> {
    Literal(&'a str),
    Star,
    Hash,
}

/// The words of `pattern`, with runs of `#` folded into one: `#.#` matches exactly what `#`
/// matches (zero or more words, twice, is zero or more words).
fn edges(pattern: &BindingPattern) -> impl Iterator<Item = Edge<'_>> {
    let mut previous_hash = false;
    pattern.as_str().split('.').filter_map(move |word| {
        let edge = match word {
            "*" => Edge::Star,
            "#" => Edge::Hash,
            literal => Edge::Literal(literal),
        };
        let repeated = previous_hash && edge == Edge::Hash;
        previous_hash = edge == Edge::Hash;
        (!repeated).then_some(edge)
    })
}

/// Binding patterns and the values bound with them (queues, for a broker), indexed by word.
pub(crate) struct TopicTrie<T> {
    nodes: Vec<Node<T>>,
    /// Arena slots of removed nodes, reused by the next insert.
    free: Vec<NodeId>,
    len: usize,
}

impl<T> Default for TopicTrie<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TopicTrie<T> {
    /// An empty trie.
    pub(crate) fn new() -> Self {
        Self {
            nodes: vec![Node::new(false, false)],
            free: Vec::new(),
            len: 0,
        }
    }

    /// The number of (pattern, value) entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the trie holds no entry.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn node(&self, id: NodeId) -> &Node<T> {
        &self.nodes[id as usize]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node<T> {
        &mut self.nodes[id as usize]
    }

    fn child(&self, id: NodeId, edge: Edge<'_>) -> Option<NodeId> {
        let node = self.node(id);
        match edge {
            Edge::Literal(word) => node.literals.get(word.as_bytes()),
            Edge::Star => node.star,
            Edge::Hash => node.hash,
        }
    }

    fn allocate(&mut self, node: Node<T>) -> NodeId {
        match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                let id = NodeId::try_from(self.nodes.len()).expect("fewer than 2^32 trie nodes");
                self.nodes.push(node);
                id
            }
        }
    }

    /// Adds `value` under `pattern`. Adding the same pair twice keeps two entries: callers
    /// that want a binding once check first, as a broker does.
    pub(crate) fn insert(&mut self, pattern: &BindingPattern, value: T) {
        let mut at = ROOT;
        for edge in edges(pattern) {
            at = match self.child(at, edge) {
                Some(next) => next,
                None => {
                    let parent_under_hash = self.node(at).under_hash;
                    let is_hash = edge == Edge::Hash;
                    let next = self.allocate(Node::new(
                        is_hash && parent_under_hash,
                        is_hash || parent_under_hash,
                    ));
                    let parent = self.node_mut(at);
                    match edge {
                        Edge::Literal(word) => {
                            parent.literals.insert(word.as_bytes(), next);
                        }
                        Edge::Star => parent.star = Some(next),
                        Edge::Hash => parent.hash = Some(next),
                    }
                    next
                }
            };
        }
        self.node_mut(at).values.push(value);
        self.len += 1;
    }

    /// Removes the entries of `pattern` whose value `remove` selects; returns how many it
    /// removed. Nodes left without entries or children are freed.
    pub(crate) fn remove(
        &mut self,
        pattern: &BindingPattern,
        mut remove: impl FnMut(&T) -> bool,
    ) -> usize {
        let mut path = vec![(ROOT, None)];
        for edge in edges(pattern) {
            let (at, _) = path[path.len() - 1];
            match self.child(at, edge) {
                Some(next) => path.push((next, Some(edge))),
                None => return 0,
            }
        }
        let (end, _) = path[path.len() - 1];
        let values = &mut self.node_mut(end).values;
        let before = values.len();
        values.retain(|v| !remove(v));
        let removed = before - values.len();
        self.len -= removed;
        // Free the nodes that became useless, from the end of the path up.
        while path.len() > 1 {
            let (at, edge) = path[path.len() - 1];
            if !self.node(at).is_empty() {
                break;
            }
            path.pop();
            let (parent, _) = path[path.len() - 1];
            let parent = self.node_mut(parent);
            match edge {
                Some(Edge::Literal(word)) => {
                    parent.literals.remove(word.as_bytes());
                }
                Some(Edge::Star) => parent.star = None,
                Some(Edge::Hash) => parent.hash = None,
                None => unreachable!("only the root has no edge"),
            }
            self.nodes[at as usize] = Node::new(false, false);
            self.free.push(at);
        }
        removed
    }

    /// Calls `visit` with the value of every entry whose pattern matches `key`, each entry at
    /// most once, in no particular order. `key` may be any text a broker accepts, as for
    /// [`BindingPattern::matches`].
    pub(crate) fn for_each_match<'t>(&'t self, key: &str, mut visit: impl FnMut(&'t T)) {
        if self.len == 0 {
            return;
        }
        let mut walk = Walk {
            trie: self,
            key: key.as_bytes(),
            entered: Vec::new(),
            visit: &mut visit,
        };
        // Position of the next unread word; past the end when every word was read (the empty
        // key has no word at all).
        let start = if key.is_empty() { 1 } else { 0 };
        walk.node(ROOT, start);
    }

    /// Whether some entry's pattern matches `key`.
    #[cfg(test)]
    pub(crate) fn matches_any(&self, key: &str) -> bool {
        let mut any = false;
        self.for_each_match(key, |_| any = true);
        any
    }
}

/// One match in progress.
struct Walk<'t, 'k, T, F> {
    trie: &'t TopicTrie<T>,
    key: &'k [u8],
    /// For `#` nodes below another `#`: the smallest key position each was entered at.
    /// Entering at `p` walks every suffix from `p` on, so a later entry at `p' >= p` has
    /// nothing left to do; this keeps a match polynomial whatever the patterns.
    entered: Vec<(NodeId, usize)>,
    visit: &'k mut F,
}

impl<'t, T, F: FnMut(&'t T)> Walk<'t, '_, T, F> {
    fn exhausted(&self, pos: usize) -> bool {
        pos > self.key.len()
    }

    /// The end of the word starting at `pos`.
    fn end_of(&self, pos: usize) -> usize {
        self.key[pos..]
            .iter()
            .position(|&b| b == b'.')
            .map_or(self.key.len(), |i| pos + i)
    }

    /// Matches the words from `pos` on against the patterns below `id`.
    fn node(&mut self, id: NodeId, pos: usize) {
        let trie = self.trie;
        let node = trie.node(id);
        if self.exhausted(pos) {
            for value in &node.values {
                (self.visit)(value);
            }
        } else {
            let end = self.end_of(pos);
            if !node.literals.is_empty()
                && let Some(next) = node.literals.get(&self.key[pos..end])
            {
                self.node(next, end + 1);
            }
            if let Some(next) = node.star {
                self.node(next, end + 1);
            }
        }
        if let Some(hash) = node.hash {
            self.hash(hash, pos);
        }
    }

    /// `#` swallows zero or more words: matches the rest of the pattern against every suffix
    /// of the key from `pos` on.
    fn hash(&mut self, id: NodeId, pos: usize) {
        let mut until = usize::MAX;
        if self.trie.node(id).nested_hash {
            match self.entered.iter_mut().find(|(node, _)| *node == id) {
                Some((_, first)) if *first <= pos => return,
                Some((_, first)) => until = std::mem::replace(first, pos),
                None => self.entered.push((id, pos)),
            }
        }
        let mut at = pos;
        while at < until {
            self.node(id, at);
            if self.exhausted(at) {
                break;
            }
            at = self.end_of(at) + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pattern(text: &str) -> BindingPattern {
        BindingPattern::parse(text).expect("valid pattern")
    }

    fn matched(trie: &TopicTrie<usize>, key: &str) -> Vec<usize> {
        let mut got = Vec::new();
        trie.for_each_match(key, |v| got.push(*v));
        got.sort_unstable();
        got
    }

    #[test]
    fn the_table_of_the_matcher() {
        let cases: &[(&str, &str, bool)] = &[
            ("order.v1.submit", "order.v1.submit", true),
            ("order.v1.submit", "order.v1.chargeback", false),
            ("order.*.submit", "order.v1.submit", true),
            ("order.*.submit", "order.submit", false),
            ("order.*.submit", "order.v1.x.submit", false),
            ("order.#", "order", true),
            ("order.#", "order.v1.submit", true),
            ("order.#", "orders.v1.submit", false),
            ("#.submit", "submit", true),
            ("#.submit", "order.v1.submitted", false),
            ("a.#.c", "a.c", true),
            ("a.#.c", "a.b.b.c", true),
            ("a.#.c", "a.b.c.d", false),
            ("#", "", true),
            ("#", "a.b.c", true),
            ("*", "", false),
            ("*", "a.b", false),
            ("order.*", "order", false),
            ("#.#", "", true),
            ("#.*", "", false),
            ("*.#", "", false),
            ("a.#.#.b", "a.b", true),
            ("#.a.#", "x.a.y", true),
            ("#.a.#", "x.b.y", false),
            ("a.*.#.c", "a.c", false),
            ("#.b.#.d", "a.b.c.b.d", true),
            ("*.*", "a..", false),
            ("a.*", "a.", true),
            ("#.c", "a.b.c.c", true),
        ];
        for &(text, key, expected) in cases {
            let mut trie = TopicTrie::new();
            trie.insert(&pattern(text), 0);
            assert_eq!(trie.matches_any(key), expected, "{text} vs {key:?}");
            assert_eq!(pattern(text).matches(key), expected, "{text} vs {key:?}");
        }
    }

    #[test]
    fn every_matching_entry_once() {
        let mut trie = TopicTrie::new();
        let texts = ["#.a.#", "#", "#.#", "a.#.a", "*.a", "a.a.a", "#.a.#.a.#"];
        for (i, text) in texts.iter().enumerate() {
            trie.insert(&pattern(text), i);
        }
        assert_eq!(matched(&trie, "a.a.a"), [0, 1, 2, 3, 5, 6]);
        assert_eq!(matched(&trie, "b.a"), [0, 1, 2, 4]);
        assert_eq!(matched(&trie, ""), [1, 2]);
    }

    #[test]
    fn removing_frees_nodes_and_keeps_the_rest() {
        let mut trie = TopicTrie::new();
        trie.insert(&pattern("order.*.submit"), 1);
        trie.insert(&pattern("order.*.submit"), 2);
        trie.insert(&pattern("order.#"), 3);
        assert_eq!(trie.len(), 3);
        assert_eq!(matched(&trie, "order.v1.submit"), [1, 2, 3]);
        assert_eq!(trie.remove(&pattern("order.*.submit"), |v| *v == 1), 1);
        assert_eq!(matched(&trie, "order.v1.submit"), [2, 3]);
        assert_eq!(trie.remove(&pattern("order.*.nothing"), |_| true), 0);
        assert_eq!(trie.remove(&pattern("order.*.submit"), |_| true), 1);
        assert_eq!(trie.remove(&pattern("order.#"), |_| true), 1);
        assert!(trie.is_empty());
        assert_eq!(
            trie.nodes.len() - trie.free.len(),
            1,
            "only the root is left"
        );
        trie.insert(&pattern("a.b.c"), 4);
        assert_eq!(matched(&trie, "a.b.c"), [4]);
        assert_eq!(trie.nodes.len(), 5, "freed nodes are reused");
    }

    #[test]
    fn many_literal_children_are_hashed_and_still_match() {
        let mut trie = TopicTrie::new();
        for i in 0..50 {
            trie.insert(&pattern(&format!("w{i}.*")), i);
            trie.insert(&pattern(&format!("t.w{i}")), 100 + i);
        }
        assert!(matches!(trie.node(ROOT).literals, Literals::Many(_)));
        for i in 0..50 {
            assert_eq!(matched(&trie, &format!("w{i}.a")), [i]);
            assert_eq!(matched(&trie, &format!("t.w{i}")), [100 + i]);
        }
        assert!(matched(&trie, "w50.a").is_empty());
        for i in (0..50).step_by(2) {
            assert_eq!(trie.remove(&pattern(&format!("w{i}.*")), |_| true), 1);
        }
        assert!(matched(&trie, "w2.a").is_empty());
        assert_eq!(matched(&trie, "w3.a"), [3]);
        assert_eq!(trie.len(), 75);
    }

    fn pattern_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "*", "#"]), 1..7)
            .prop_map(|w| w.join("."))
    }

    /// Keys as a broker may send them: empty words and the empty key included.
    fn key_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c", ""]), 0..8)
            .prop_map(|w| w.join("."))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Many patterns in one trie, some removed again: the trie visits exactly the entries
        /// whose pattern `BindingPattern::matches` the key, each once.
        #[test]
        fn the_trie_agrees_with_the_matcher(
            patterns in prop::collection::vec(pattern_strategy(), 1..24),
            removed in prop::collection::vec(any::<bool>(), 24),
            keys in prop::collection::vec(key_strategy(), 1..16),
        ) {
            let parsed: Vec<BindingPattern> = patterns.iter().map(|p| pattern(p)).collect();
            let mut trie = TopicTrie::new();
            for (i, p) in parsed.iter().enumerate() {
                trie.insert(p, i);
            }
            let kept: Vec<usize> = (0..parsed.len()).filter(|&i| !removed[i]).collect();
            for (i, p) in parsed.iter().enumerate() {
                if removed[i] {
                    prop_assert_eq!(trie.remove(p, |v| *v == i), 1);
                }
            }
            prop_assert_eq!(trie.len(), kept.len());
            for key in &keys {
                let expected: Vec<usize> =
                    kept.iter().copied().filter(|&i| parsed[i].matches(key)).collect();
                prop_assert_eq!(matched(&trie, key), expected, "key {:?} patterns {:?}", key, patterns);
            }
        }
    }
}
