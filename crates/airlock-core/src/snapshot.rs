//! A schema as a set of comparable objects, and the difference between two.
//!
//! Each engine's driver reads its catalog into a [`SchemaSnapshot`]: every
//! object a migration can change, keyed by an [`ObjectPath`] (kind, schema,
//! the table it belongs to, name), with its attributes as normalized text
//! (the engine's own rendering of a definition where it has one:
//! `pg_get_indexdef`, `SHOW CREATE`, `sqlite_master.sql`). What the engine
//! does not preserve is left out (object ids, the gaps dropped columns leave
//! in positions), so two databases built by different but equivalent
//! statement orders compare equal; the order of a table's columns is an
//! object of its own ([`ObjectKind::ColumnOrder`]), since it matters on
//! MySQL and rarely elsewhere.
//!
//! [`diff`] is pure: what rehearsal compares before an up and after its down,
//! and what drift compares between the live schema and the one the applied
//! migrations produce.

use std::collections::BTreeMap;
use std::fmt;

/// The kinds of objects a snapshot holds, in the order a diff lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// A schema (PostgreSQL namespace).
    Schema,
    /// An installed extension.
    Extension,
    /// An enum type and its labels in order.
    Enum,
    /// A domain: base type, default, NOT NULL, checks.
    Domain,
    /// A composite type and its attributes.
    CompositeType,
    /// A sequence not owned by an identity column.
    Sequence,
    /// A function or procedure, by name and argument types.
    Function,
    /// A table (ordinary or partitioned) and its options.
    Table,
    /// A column of a table.
    Column,
    /// The order of a table's columns.
    ColumnOrder,
    /// A constraint of a table (primary key, foreign key, unique, check, exclusion).
    Constraint,
    /// An index of a table or materialized view.
    Index,
    /// A trigger on a table or view.
    Trigger,
    /// A row-level security policy of a table.
    Policy,
    /// A view and its definition.
    View,
    /// A materialized view and its definition.
    MaterializedView,
}

impl ObjectKind {
    /// The kebab-case name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Schema => "schema",
            ObjectKind::Extension => "extension",
            ObjectKind::Enum => "enum",
            ObjectKind::Domain => "domain",
            ObjectKind::CompositeType => "type",
            ObjectKind::Sequence => "sequence",
            ObjectKind::Function => "function",
            ObjectKind::Table => "table",
            ObjectKind::Column => "column",
            ObjectKind::ColumnOrder => "column-order",
            ObjectKind::Constraint => "constraint",
            ObjectKind::Index => "index",
            ObjectKind::Trigger => "trigger",
            ObjectKind::Policy => "policy",
            ObjectKind::View => "view",
            ObjectKind::MaterializedView => "materialized-view",
        }
    }

    /// The kind named `name` (as [`ObjectKind::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Every kind.
    pub const ALL: [ObjectKind; 16] = [
        ObjectKind::Schema,
        ObjectKind::Extension,
        ObjectKind::Enum,
        ObjectKind::Domain,
        ObjectKind::CompositeType,
        ObjectKind::Sequence,
        ObjectKind::Function,
        ObjectKind::Table,
        ObjectKind::Column,
        ObjectKind::ColumnOrder,
        ObjectKind::Constraint,
        ObjectKind::Index,
        ObjectKind::Trigger,
        ObjectKind::Policy,
        ObjectKind::View,
        ObjectKind::MaterializedView,
    ];

    /// The kinds that belong to a relation: the relation itself, and its parts.
    pub const OF_RELATIONS: [ObjectKind; 9] = [
        ObjectKind::Table,
        ObjectKind::View,
        ObjectKind::MaterializedView,
        ObjectKind::Column,
        ObjectKind::ColumnOrder,
        ObjectKind::Constraint,
        ObjectKind::Index,
        ObjectKind::Trigger,
        ObjectKind::Policy,
    ];
}

/// Where an object is: its kind, schema (None on SQLite, the database on
/// MySQL is left out: one database is compared at a time), the table or view
/// it belongs to (columns, constraints, indexes, triggers), and its name
/// (a function's includes its argument types).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectPath {
    /// What it is.
    pub kind: ObjectKind,
    /// Its schema, when the engine has schemas.
    pub schema: Option<String>,
    /// The table (or view) it belongs to.
    pub table: Option<String>,
    /// Its name.
    pub name: String,
}

impl ObjectPath {
    /// An object of its own (a table, a view, a sequence...).
    pub fn new(kind: ObjectKind, schema: Option<&str>, name: &str) -> ObjectPath {
        ObjectPath { kind, schema: schema.map(str::to_owned), table: None, name: name.to_owned() }
    }

    /// An object that belongs to a table (a column, an index...).
    pub fn of_table(kind: ObjectKind, schema: Option<&str>, table: &str, name: &str) -> ObjectPath {
        ObjectPath { kind, schema: schema.map(str::to_owned), table: Some(table.to_owned()), name: name.to_owned() }
    }

    /// The qualified name without the kind: `public.orders.note`, `orders.note` on SQLite.
    pub fn qualified(&self) -> String {
        let mut parts: Vec<&str> = Vec::with_capacity(3);
        parts.extend(self.schema.as_deref());
        parts.extend(self.table.as_deref());
        if self.kind != ObjectKind::ColumnOrder {
            parts.push(&self.name);
        }
        parts.join(".")
    }
}

impl fmt::Display for ObjectPath {
    /// `column public.orders.note`, `index public.orders_user_idx`... as a person reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.qualified())
    }
}

/// An object's attributes, each as normalized text: `type`, `nullable`,
/// `default`, `definition`... Absent means "not set" (no default, no comment).
pub type Attributes = BTreeMap<String, String>;

/// Everything a migration can change in one database, comparable with another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemaSnapshot {
    /// Every object, by path.
    pub objects: BTreeMap<ObjectPath, Attributes>,
}

impl SchemaSnapshot {
    /// Adds an object; a second object at the same path replaces the first.
    pub fn insert(&mut self, path: ObjectPath, attributes: Attributes) {
        self.objects.insert(path, attributes);
    }

    /// The object at `path`.
    pub fn get(&self, path: &ObjectPath) -> Option<&Attributes> {
        self.objects.get(path)
    }

    /// How many objects there are.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether there is no object at all (an empty database).
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Leaves out every object `ignore` matches (and what belongs to a table it matches).
    pub fn without(mut self, ignore: impl Fn(&ObjectPath) -> bool) -> SchemaSnapshot {
        self.objects.retain(|path, _| !ignore(path));
        self
    }
}

/// The part of a schema one step can change, when what it does is known
/// well enough: the relations (tables, views, materialized views) its
/// statements name, by name in any schema, the kinds of their objects that
/// may have changed (a `CREATE INDEX` changes only indexes), and the kinds
/// of object of no relation (schemas, extensions, types, sequences,
/// routines) that may have changed too. A snapshot of a scope holds every
/// object of those kinds of those relations, and every object of those
/// other kinds. Everything else is as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// The relations' names.
    pub relations: std::collections::BTreeSet<String>,
    /// The kinds of the relations' objects that may have changed: of
    /// [`ObjectKind::OF_RELATIONS`].
    pub parts: std::collections::BTreeSet<ObjectKind>,
    /// Kinds of object of no relation that may have changed (a serial
    /// column's `Sequence`, a commented `Function`...).
    pub others: std::collections::BTreeSet<ObjectKind>,
}

impl Scope {
    /// Whether a snapshot of this scope holds the object at `path`.
    pub fn holds(&self, path: &ObjectPath) -> bool {
        match path.kind {
            ObjectKind::Table | ObjectKind::View | ObjectKind::MaterializedView => {
                self.parts.contains(&path.kind) && self.relations.contains(&path.name)
            }
            ObjectKind::Column
            | ObjectKind::ColumnOrder
            | ObjectKind::Constraint
            | ObjectKind::Index
            | ObjectKind::Trigger
            | ObjectKind::Policy => {
                self.parts.contains(&path.kind) && path.table.as_ref().is_some_and(|t| self.relations.contains(t))
            }
            ObjectKind::Schema
            | ObjectKind::Extension
            | ObjectKind::Enum
            | ObjectKind::Domain
            | ObjectKind::CompositeType
            | ObjectKind::Sequence
            | ObjectKind::Function => self.others.contains(&path.kind),
        }
    }

    /// What either scope holds (and, of the relations of one, the parts the
    /// other reads: more than either, never less).
    pub fn union(&self, other: &Scope) -> Scope {
        Scope {
            relations: self.relations.union(&other.relations).cloned().collect(),
            parts: self.parts.union(&other.parts).copied().collect(),
            others: self.others.union(&other.others).copied().collect(),
        }
    }
}

impl SchemaSnapshot {
    /// This schema after a step whose changes `scope` holds: its objects
    /// outside the scope as they are, those inside as `part` (a snapshot of
    /// the scope, read after the step) has them.
    pub fn refreshed(&self, scope: &Scope, part: SchemaSnapshot) -> SchemaSnapshot {
        let mut objects: BTreeMap<ObjectPath, Attributes> =
            self.objects.iter().filter(|(path, _)| !scope.holds(path)).map(|(p, a)| (p.clone(), a.clone())).collect();
        objects.extend(part.objects.into_iter().filter(|(path, _)| scope.holds(path)));
        SchemaSnapshot { objects }
    }

    /// [`SchemaSnapshot::refreshed`] in place, when the schema before is not needed again.
    pub fn refresh(&mut self, scope: &Scope, part: SchemaSnapshot) {
        self.objects.retain(|path, _| !scope.holds(path));
        self.objects.extend(part.objects.into_iter().filter(|(path, _)| scope.holds(path)));
    }
}

/// Objects to leave out of a comparison: globs over an object as it is
/// written in output (`index public.orders.orders_by_hand`,
/// `table partman.*`, `* audit.*`). What belongs to a table (its columns,
/// indexes, constraints, triggers) is left out with the table.
#[derive(Clone, Debug, Default)]
pub struct Ignore {
    globs: Option<globset::GlobSet>,
}

impl Ignore {
    /// Compiles the patterns; a bad one is named.
    pub fn new(patterns: &[String]) -> Result<Ignore, String> {
        if patterns.is_empty() {
            return Ok(Ignore::default());
        }
        let mut set = globset::GlobSetBuilder::new();
        for pattern in patterns {
            set.add(globset::Glob::new(pattern).map_err(|e| format!("`{pattern}`: {}", e.kind()))?);
        }
        set.build().map(|globs| Ignore { globs: Some(globs) }).map_err(|e| e.to_string())
    }

    /// Whether `path` is left out.
    pub fn matches(&self, path: &ObjectPath) -> bool {
        let Some(globs) = &self.globs else { return false };
        if globs.is_match(path.to_string()) {
            return true;
        }
        path.table.as_ref().is_some_and(|table| {
            let owner =
                ObjectPath { kind: ObjectKind::Table, schema: path.schema.clone(), table: None, name: table.clone() };
            globs.is_match(owner.to_string())
        })
    }
}

/// What changed for one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Only in the second snapshot.
    Added,
    /// Only in the first.
    Removed,
    /// In both, with this attribute different (absent on one side: None).
    Changed {
        /// The attribute.
        attribute: String,
        /// Its value in the first snapshot.
        before: Option<String>,
        /// Its value in the second.
        after: Option<String>,
    },
}

impl Change {
    /// `added`, `removed`, or `changed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed { .. } => "changed",
        }
    }
}

/// One difference between two snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The object.
    pub object: ObjectPath,
    /// What changed.
    pub change: Change,
    /// The object's attributes in the first snapshot (None when added).
    pub before: Option<Attributes>,
    /// In the second (None when removed).
    pub after: Option<Attributes>,
}

impl Difference {
    /// One line: `column public.orders.note: default changed from 'x'::text to none`.
    pub fn describe(&self) -> String {
        match &self.change {
            Change::Added => format!("{}: only in the second", self.object),
            Change::Removed => format!("{}: only in the first", self.object),
            Change::Changed { attribute, before, after } => format!(
                "{}: {attribute} {} → {}",
                self.object,
                before.as_deref().unwrap_or("(none)"),
                after.as_deref().unwrap_or("(none)")
            ),
        }
    }
}

/// Every difference from `before` to `after`, in path order: objects only in
/// one, then for objects in both each attribute that differs. An object
/// removed with its table is listed on its own too (a column, an index), so
/// that what a down script forgot is named whatever else it forgot.
pub fn diff(before: &SchemaSnapshot, after: &SchemaSnapshot) -> Vec<Difference> {
    diff_objects(before.objects.iter(), after.objects.iter())
}

/// [`diff`] of two schemas known to be equal outside `scope` (one is the
/// other with a step's scope read again): only the objects `scope` holds
/// are compared.
pub fn diff_within(before: &SchemaSnapshot, after: &SchemaSnapshot, scope: &Scope) -> Vec<Difference> {
    let held = |(path, _): &(&ObjectPath, &Attributes)| scope.holds(path);
    diff_objects(before.objects.iter().filter(held), after.objects.iter().filter(held))
}

/// The differences between two runs of objects in path order.
fn diff_objects<'a>(
    a: impl Iterator<Item = (&'a ObjectPath, &'a Attributes)>,
    b: impl Iterator<Item = (&'a ObjectPath, &'a Attributes)>,
) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut a = a.peekable();
    let mut b = b.peekable();
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((pa, _)), Some((pb, _))) => pa.cmp(pb),
        };
        match order {
            std::cmp::Ordering::Less => {
                let (path, attrs) = a.next().expect("peeked");
                out.push(Difference {
                    object: path.clone(),
                    change: Change::Removed,
                    before: Some(attrs.clone()),
                    after: None,
                });
            }
            std::cmp::Ordering::Greater => {
                let (path, attrs) = b.next().expect("peeked");
                out.push(Difference {
                    object: path.clone(),
                    change: Change::Added,
                    before: None,
                    after: Some(attrs.clone()),
                });
            }
            std::cmp::Ordering::Equal => {
                let ((path, x), (_, y)) = (a.next().expect("peeked"), b.next().expect("peeked"));
                if x == y {
                    continue;
                }
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for key in keys {
                    let (old, new) = (x.get(key), y.get(key));
                    if old != new {
                        out.push(Difference {
                            object: path.clone(),
                            change: Change::Changed {
                                attribute: key.clone(),
                                before: old.cloned(),
                                after: new.cloned(),
                            },
                            before: Some(x.clone()),
                            after: Some(y.clone()),
                        });
                    }
                }
            }
        }
    }
    out
}

/// Collapses runs of whitespace to one space and trims: for definitions an
/// engine keeps as written (SQLite, MySQL views), where a reformatted but
/// equal statement must compare equal.
pub fn squash_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Attributes {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn column(table: &str, name: &str) -> ObjectPath {
        ObjectPath::of_table(ObjectKind::Column, Some("public"), table, name)
    }

    #[test]
    fn a_refreshed_schema_takes_the_scope_from_the_part_and_keeps_the_rest() {
        let table = |name: &str| ObjectPath::new(ObjectKind::Table, Some("public"), name);
        let index = |t: &str, name: &str| ObjectPath::of_table(ObjectKind::Index, Some("public"), t, name);
        let function = ObjectPath::new(ObjectKind::Function, Some("public"), "f()");
        let mut before = SchemaSnapshot::default();
        for path in [table("t"), column("t", "a"), index("t", "t_a"), table("u"), column("u", "b"), function] {
            before.insert(path, Attributes::new());
        }
        // After the step: t lost its index and gained a column; the function is gone.
        let mut part = SchemaSnapshot::default();
        for path in [table("t"), column("t", "a"), column("t", "c")] {
            part.insert(path, Attributes::new());
        }
        // A part may hold more than the scope: only the scope is taken from it.
        part.insert(column("u", "stale"), Attributes::new());
        let scope = Scope {
            relations: ["t".to_owned()].into(),
            parts: ObjectKind::OF_RELATIONS.into(),
            others: [ObjectKind::Function].into(),
        };
        let after = before.refreshed(&scope, part.clone());
        let paths: Vec<String> = after.objects.keys().map(ToString::to_string).collect();
        assert_eq!(
            paths,
            ["table public.t", "table public.u", "column public.t.a", "column public.t.c", "column public.u.b"]
        );
        let mut in_place = before.clone();
        in_place.refresh(&scope, part.clone());
        assert_eq!(in_place, after);
        // Equal outside the scope: the scope's differences are all of them.
        assert_eq!(diff_within(&before, &after, &scope), diff(&before, &after));
        // Without functions among `others`, the function stays as it was.
        let after = before.refreshed(&Scope { others: [ObjectKind::Sequence].into(), ..scope.clone() }, part.clone());
        assert!(after.objects.keys().any(|p| p.kind == ObjectKind::Function));
        // With only columns among the parts, t keeps its index.
        let after = before.refreshed(&Scope { parts: [ObjectKind::Column].into(), ..scope }, part);
        let paths: Vec<String> = after.objects.keys().map(ToString::to_string).collect();
        assert_eq!(
            paths,
            [
                "table public.t",
                "table public.u",
                "column public.t.a",
                "column public.t.c",
                "column public.u.b",
                "index public.t.t_a"
            ]
        );
    }

    #[test]
    fn equal_snapshots_have_no_difference() {
        let mut s = SchemaSnapshot::default();
        s.insert(ObjectPath::new(ObjectKind::Table, Some("public"), "t"), Attributes::new());
        s.insert(column("t", "id"), attrs(&[("type", "bigint"), ("nullable", "false")]));
        assert!(diff(&s, &s.clone()).is_empty());
    }

    #[test]
    fn added_removed_and_each_changed_attribute_are_listed_in_path_order() {
        let mut before = SchemaSnapshot::default();
        before.insert(ObjectPath::new(ObjectKind::Table, Some("public"), "t"), Attributes::new());
        before.insert(column("t", "a"), attrs(&[("type", "text"), ("default", "'x'::text")]));
        before.insert(column("t", "gone"), attrs(&[("type", "int")]));
        let mut after = before.clone();
        after.objects.remove(&column("t", "gone"));
        after.insert(column("t", "a"), attrs(&[("type", "character varying(20)")]));
        after
            .insert(ObjectPath::of_table(ObjectKind::Index, Some("public"), "t", "t_a"), attrs(&[("unique", "false")]));

        let found = diff(&before, &after);
        let lines: Vec<String> = found.iter().map(Difference::describe).collect();
        assert_eq!(
            lines,
            [
                "column public.t.a: default 'x'::text → (none)",
                "column public.t.a: type text → character varying(20)",
                "column public.t.gone: only in the first",
                "index public.t.t_a: only in the second",
            ]
        );
        assert_eq!(found[2].change, Change::Removed);
        assert_eq!(found[3].change.as_str(), "added");
    }

    #[test]
    fn kinds_round_trip_by_name_and_order_paths() {
        for kind in ObjectKind::ALL {
            assert_eq!(ObjectKind::from_name(kind.as_str()), Some(kind));
        }
        let order = ObjectPath::of_table(ObjectKind::ColumnOrder, None, "t", "");
        assert_eq!(order.to_string(), "column-order t");
        assert!(ObjectPath::new(ObjectKind::Table, None, "z") < column("a", "a"));
    }

    #[test]
    fn whitespace_is_squashed() {
        assert_eq!(squash_whitespace("  CREATE  VIEW v\n\tAS SELECT 1 "), "CREATE VIEW v AS SELECT 1");
    }

    #[test]
    fn ignore_globs_match_objects_and_what_belongs_to_their_tables() {
        let ignore = Ignore::new(&["table partman.*".to_owned(), "index *_by_hand".to_owned()]).unwrap();
        assert!(ignore.matches(&ObjectPath::new(ObjectKind::Table, Some("partman"), "p_2026")));
        assert!(ignore.matches(&ObjectPath::of_table(ObjectKind::Column, Some("partman"), "p_2026", "id")));
        assert!(ignore.matches(&ObjectPath::of_table(ObjectKind::Index, Some("public"), "t", "t_by_hand")));
        assert!(!ignore.matches(&ObjectPath::of_table(ObjectKind::Index, Some("public"), "t", "t_a")));
        assert!(!Ignore::default().matches(&ObjectPath::new(ObjectKind::Table, None, "t")));
        let bad = Ignore::new(&["table [oops".to_owned()]).unwrap_err();
        assert!(bad.contains("`table [oops`"), "{bad}");
    }

    #[test]
    fn ignored_objects_are_left_out() {
        let mut s = SchemaSnapshot::default();
        s.insert(ObjectPath::new(ObjectKind::Table, Some("public"), "keep"), Attributes::new());
        s.insert(ObjectPath::new(ObjectKind::Table, Some("partman"), "p_2026"), Attributes::new());
        let s = s.without(|p| p.schema.as_deref() == Some("partman"));
        assert_eq!(s.len(), 1);
    }
}
