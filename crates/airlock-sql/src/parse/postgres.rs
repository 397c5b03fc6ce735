//! PostgreSQL: `pg_query`'s parse tree → [`Op`]s. Type names are rendered as
//! PostgreSQL's `format_type` prints them, so they compare with the live catalog.

use pg_query::NodeEnum;
use pg_query::protobuf::{self, AlterTableType, ConstrType, DropBehavior, ObjectType, TransactionStmtKind};

use super::{
    AlterAction, ColumnSpec, CommentOn, Constraint, DO_UNSEEN, Expr, Op, ParseError, RelationKind, TableName, TxKind,
};

pub(super) fn parse(sql: &str) -> Result<Vec<Op>, ParseError> {
    let tree = pg_query::parse(sql).map_err(|e| ParseError {
        // The crate's wrapper words ("Invalid statement: ...") say nothing the rule does not.
        message: match &e {
            pg_query::Error::Parse(message) => message.clone(),
            other => other.to_string(),
        },
        position: error_position(sql),
        certain: true,
    })?;
    let mut ops = tree
        .protobuf
        .stmts
        .iter()
        .filter_map(|raw| raw.stmt.as_ref()?.node.as_ref().map(|n| (n, raw.stmt_location.max(0) as usize)))
        .flat_map(|(node, start)| match node {
            NodeEnum::DoStmt(s) => do_block(s),
            other => vec![op(other, start)],
        })
        .collect::<Vec<Op>>();
    // Exactly sized: a long history keeps every pending statement's operations until it runs.
    ops.shrink_to_fit();
    Ok(ops)
}

/// The statements a PL/pgSQL `DO` block runs, in order, parsed like any
/// other (so `DO $$ BEGIN IF NOT EXISTS (...) THEN ALTER TABLE ... END IF;
/// END $$` is checked like its ALTER); an `EXECUTE` of dynamic SQL, a body
/// in another language or one that does not parse is one
/// `Op::Other { kind: DO_UNSEEN }`. Findings inside point at the DO statement.
fn do_block(s: &protobuf::DoStmt) -> Vec<Op> {
    let option = |name: &str| {
        s.args.iter().find_map(|a| match a.node.as_ref() {
            Some(NodeEnum::DefElem(d)) if d.defname == name => match d.arg.as_deref().and_then(|n| n.node.as_ref()) {
                Some(NodeEnum::String(v)) => Some(v.sval.clone()),
                _ => None,
            },
            _ => None,
        })
    };
    let unseen = || vec![Op::Other { kind: DO_UNSEEN.to_owned() }];
    let (Some(body), language) = (option("as"), option("language")) else { return unseen() };
    if language.is_some_and(|l| !l.eq_ignore_ascii_case("plpgsql")) {
        return unseen();
    }
    // parse_plpgsql reads a CREATE FUNCTION; a dollar quote the body cannot contain.
    let mut tag = String::from("airlock_do");
    while body.contains(&format!("${tag}$")) {
        tag.push('_');
    }
    let function = format!("CREATE FUNCTION airlock_do() RETURNS void LANGUAGE plpgsql AS ${tag}${body}${tag}$");
    let Ok(tree) = pg_query::parse_plpgsql(&function) else { return unseen() };
    let mut queries = Vec::new();
    let mut dynamic = false;
    walk_plpgsql(&tree, &mut queries, &mut dynamic);
    let mut ops = Vec::new();
    for query in queries {
        match parse(&query) {
            // Offsets inside are the inner statement's: point at the DO itself.
            Ok(inner) => ops.extend(inner.into_iter().map(|mut op| {
                if let Op::AlterTable { actions, .. } = &mut op {
                    for (action, at) in actions.iter_mut() {
                        *at = 0;
                        if let AlterAction::AddColumn(spec) = action {
                            spec.at = 0;
                        }
                    }
                }
                op
            })),
            Err(_) => dynamic = true,
        }
    }
    if dynamic {
        ops.extend(unseen());
    }
    ops
}

/// Collects, depth first in order, the SQL of every `PLpgSQL_stmt_execsql`;
/// notes any `EXECUTE` of a string.
fn walk_plpgsql(value: &serde_json::Value, queries: &mut Vec<String>, dynamic: &mut bool) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                match key.as_str() {
                    "PLpgSQL_stmt_execsql" => {
                        if let Some(q) = inner.pointer("/sqlstmt/PLpgSQL_expr/query").and_then(|q| q.as_str()) {
                            queries.push(q.to_owned());
                        }
                    }
                    "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors" => *dynamic = true,
                    _ => walk_plpgsql(inner, queries, dynamic),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| walk_plpgsql(i, queries, dynamic)),
        _ => {}
    }
}

fn offset(location: i32, start: usize) -> usize {
    if location >= 0 { location as usize } else { start }
}

fn table(range: Option<&protobuf::RangeVar>) -> TableName {
    match range {
        Some(r) => {
            TableName { schema: (!r.schemaname.is_empty()).then(|| r.schemaname.clone()), name: r.relname.clone() }
        }
        None => TableName::bare("?"),
    }
}

fn strings(nodes: &[protobuf::Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|n| match n.node.as_ref()? {
            NodeEnum::String(s) => Some(s.sval.clone()),
            NodeEnum::IndexElem(e) if !e.name.is_empty() => Some(e.name.clone()),
            NodeEnum::IndexElem(e) => e.expr.as_deref().map(|x| expr(x).text),
            _ => None,
        })
        .collect()
}

fn qualified(nodes: &[protobuf::Node]) -> String {
    strings(nodes).join(".")
}

fn range_name(node: &protobuf::Node) -> Option<TableName> {
    match node.node.as_ref()? {
        NodeEnum::RangeVar(r) => Some(table(Some(r))),
        NodeEnum::List(l) => name_of_parts(&strings(&l.items)),
        _ => None,
    }
}

/// A relation from its dotted name's parts (`[schema, name]` or `[name]`).
fn name_of_parts(parts: &[String]) -> Option<TableName> {
    match parts {
        [name] => Some(TableName::bare(name)),
        [.., schema, name] => Some(TableName { schema: Some(schema.clone()), name: name.clone() }),
        [] => None,
    }
}

/// `format_type`'s names for the internal ones the parser produces.
fn sql_type_name(internal: &str) -> &str {
    match internal {
        "int8" => "bigint",
        "int4" => "integer",
        "int2" => "smallint",
        "float8" => "double precision",
        "float4" => "real",
        "bool" => "boolean",
        "varchar" => "character varying",
        "bpchar" => "character",
        "timestamptz" => "timestamp with time zone",
        "timestamp" => "timestamp without time zone",
        "timetz" => "time with time zone",
        "time" => "time without time zone",
        "varbit" => "bit varying",
        other => other,
    }
}

fn type_name(t: Option<&protobuf::TypeName>) -> String {
    let Some(t) = t else { return String::new() };
    let names = strings(&t.names);
    let base = names.last().map(String::as_str).unwrap_or("?");
    let mut text = sql_type_name(base).to_owned();
    let mods: Vec<String> = t.typmods.iter().map(|m| expr(m).text).collect();
    if !mods.is_empty() {
        if let Some(rest) = text.strip_prefix("timestamp ").or_else(|| text.strip_prefix("time ")) {
            // timestamp(3) with time zone
            let head = if text.starts_with("timestamp") { "timestamp" } else { "time" };
            text = format!("{head}({}) {rest}", mods.join(","));
        } else {
            text = format!("{text}({})", mods.join(","));
        }
    }
    for _ in &t.array_bounds {
        text.push_str("[]");
    }
    text
}

/// An expression's approximate text and the functions it calls.
fn expr(node: &protobuf::Node) -> Expr {
    let mut functions = Vec::new();
    let text = render(node, &mut functions);
    Expr { text, functions }
}

fn render(node: &protobuf::Node, functions: &mut Vec<String>) -> String {
    let Some(n) = node.node.as_ref() else { return String::new() };
    match n {
        NodeEnum::AConst(c) => match &c.val {
            _ if c.isnull => "NULL".to_owned(),
            Some(protobuf::a_const::Val::Ival(i)) => i.ival.to_string(),
            Some(protobuf::a_const::Val::Fval(f)) => f.fval.clone(),
            Some(protobuf::a_const::Val::Boolval(b)) => b.boolval.to_string(),
            Some(protobuf::a_const::Val::Sval(s)) => format!("'{}'", s.sval.replace('\'', "''")),
            Some(protobuf::a_const::Val::Bsval(s)) => s.bsval.clone(),
            None => "NULL".to_owned(),
        },
        NodeEnum::Integer(i) => i.ival.to_string(),
        NodeEnum::String(s) => s.sval.clone(),
        NodeEnum::FuncCall(f) => {
            let name = strings(&f.funcname);
            if let Some(last) = name.last() {
                functions.push(last.to_lowercase());
            }
            let args: Vec<String> = f.args.iter().map(|a| render(a, functions)).collect();
            format!("{}({})", name.join("."), if f.agg_star { "*".to_owned() } else { args.join(", ") })
        }
        NodeEnum::TypeCast(c) => {
            let inner = c.arg.as_deref().map(|a| render(a, functions)).unwrap_or_default();
            format!("{inner}::{}", type_name(c.type_name.as_ref()))
        }
        NodeEnum::ColumnRef(c) => qualified(&c.fields),
        NodeEnum::SqlvalueFunction(f) => {
            let name = match f.op() {
                protobuf::SqlValueFunctionOp::SvfopCurrentDate => "CURRENT_DATE",
                protobuf::SqlValueFunctionOp::SvfopCurrentTime | protobuf::SqlValueFunctionOp::SvfopCurrentTimeN => {
                    "CURRENT_TIME"
                }
                protobuf::SqlValueFunctionOp::SvfopCurrentTimestamp
                | protobuf::SqlValueFunctionOp::SvfopCurrentTimestampN => "CURRENT_TIMESTAMP",
                protobuf::SqlValueFunctionOp::SvfopLocaltime | protobuf::SqlValueFunctionOp::SvfopLocaltimeN => {
                    "LOCALTIME"
                }
                protobuf::SqlValueFunctionOp::SvfopLocaltimestamp
                | protobuf::SqlValueFunctionOp::SvfopLocaltimestampN => "LOCALTIMESTAMP",
                _ => "CURRENT_USER",
            };
            name.to_owned()
        }
        NodeEnum::AExpr(e) => {
            let op = qualified(&e.name);
            let left = e.lexpr.as_deref().map(|l| render(l, functions)).unwrap_or_default();
            let right = e.rexpr.as_deref().map(|r| render(r, functions)).unwrap_or_default();
            format!("{left} {op} {right}").trim().to_owned()
        }
        NodeEnum::BoolExpr(b) => {
            let parts: Vec<String> = b.args.iter().map(|a| render(a, functions)).collect();
            let joiner = match b.boolop() {
                protobuf::BoolExprType::AndExpr => " AND ",
                protobuf::BoolExprType::OrExpr => " OR ",
                _ => " NOT ",
            };
            parts.join(joiner)
        }
        NodeEnum::NullTest(t) => {
            let inner = t.arg.as_deref().map(|a| render(a, functions)).unwrap_or_default();
            let test = if t.nulltesttype() == protobuf::NullTestType::IsNull { "IS NULL" } else { "IS NOT NULL" };
            format!("{inner} {test}")
        }
        NodeEnum::List(l) => l.items.iter().map(|i| render(i, functions)).collect::<Vec<_>>().join(", "),
        other => {
            // Walk unknown nodes for function calls, so volatility is still seen.
            for (child, _, _, _) in other.nodes() {
                if let pg_query::NodeRef::FuncCall(f) = child {
                    if let Some(last) = strings(&f.funcname).last() {
                        functions.push(last.to_lowercase());
                    }
                }
            }
            "…".to_owned()
        }
    }
}

fn column(def: &protobuf::ColumnDef, start: usize) -> ColumnSpec {
    let data_type = type_name(def.type_name.as_ref());
    let mut spec = ColumnSpec {
        name: def.colname.clone(),
        identity: !def.identity.is_empty()
            || matches!(data_type.as_str(), "serial" | "bigserial" | "smallserial" | "serial4" | "serial8" | "serial2"),
        data_type,
        not_null: def.is_not_null,
        default: def.raw_default.as_deref().map(expr),
        collation: def.coll_clause.as_ref().map(|c| qualified(&c.collname)),
        at: offset(def.location, start),
        ..ColumnSpec::default()
    };
    for c in &def.constraints {
        let Some(NodeEnum::Constraint(c)) = c.node.as_ref() else { continue };
        match c.contype() {
            ConstrType::ConstrNotnull => spec.not_null = true,
            ConstrType::ConstrNull => spec.explicit_null = true,
            ConstrType::ConstrCheck => spec.check = c.raw_expr.as_deref().map(expr),
            ConstrType::ConstrDefault => spec.default = c.raw_expr.as_deref().map(expr),
            ConstrType::ConstrIdentity => spec.identity = true,
            ConstrType::ConstrGenerated => spec.generated_stored = true,
            ConstrType::ConstrPrimary => {
                spec.primary_key = true;
                spec.not_null = true;
            }
            ConstrType::ConstrUnique => spec.unique = true,
            ConstrType::ConstrForeign => spec.references = Some(table(c.pktable.as_ref())),
            _ => {}
        }
    }
    spec
}

fn name_of(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn constraint(c: &protobuf::Constraint) -> Constraint {
    let name = name_of(&c.conname);
    let using_index = name_of(&c.indexname);
    match c.contype() {
        ConstrType::ConstrPrimary => Constraint::PrimaryKey { name, columns: strings(&c.keys), using_index },
        ConstrType::ConstrUnique => Constraint::Unique { name, columns: strings(&c.keys), using_index },
        ConstrType::ConstrForeign => Constraint::ForeignKey {
            name,
            columns: strings(&c.fk_attrs),
            references: table(c.pktable.as_ref()),
            ref_columns: strings(&c.pk_attrs),
            not_valid: c.skip_validation,
        },
        ConstrType::ConstrCheck => Constraint::Check {
            name,
            expr: c.raw_expr.as_deref().map(expr).unwrap_or_default(),
            not_valid: c.skip_validation,
        },
        other => Constraint::Other { name, kind: format!("{other:?}") },
    }
}

fn alter_action(cmd: &protobuf::AlterTableCmd, start: usize) -> (AlterAction, usize) {
    let column_name = cmd.name.clone();
    let def = cmd.def.as_deref().and_then(|d| d.node.as_ref());
    let action = match (cmd.subtype(), def) {
        (AlterTableType::AtAddColumn, Some(NodeEnum::ColumnDef(c))) => {
            let spec = column(c, start);
            let at = spec.at;
            return (AlterAction::AddColumn(spec), at);
        }
        (AlterTableType::AtDropColumn, _) => AlterAction::DropColumn { column: column_name },
        (AlterTableType::AtAlterColumnType, Some(NodeEnum::ColumnDef(c))) => {
            let using = c.raw_default.as_deref().map(expr);
            return (
                AlterAction::AlterColumnType { column: column_name, data_type: type_name(c.type_name.as_ref()), using },
                offset(c.location, start),
            );
        }
        (AlterTableType::AtSetNotNull, _) => AlterAction::SetNotNull { column: column_name },
        (AlterTableType::AtDropNotNull, _) => AlterAction::DropNotNull { column: column_name },
        (AlterTableType::AtColumnDefault, Some(d)) => {
            AlterAction::SetDefault { column: column_name, default: expr(&protobuf::Node { node: Some(d.clone()) }) }
        }
        (AlterTableType::AtColumnDefault, None) => AlterAction::DropDefault { column: column_name },
        (AlterTableType::AtAddConstraint, Some(NodeEnum::Constraint(c))) => {
            return (AlterAction::AddConstraint(constraint(c)), offset(c.location, start));
        }
        (AlterTableType::AtValidateConstraint, _) => AlterAction::ValidateConstraint { name: column_name },
        (AlterTableType::AtDropConstraint, _) => AlterAction::DropConstraint { name: column_name },
        (other, _) => AlterAction::Other { what: format!("{other:?}").trim_start_matches("At").to_owned() },
    };
    (action, start)
}

fn behavior_cascade(behavior: i32) -> bool {
    behavior == DropBehavior::DropCascade as i32
}

fn op(node: &NodeEnum, start: usize) -> Op {
    match node {
        NodeEnum::CreateStmt(s) => {
            // Sized exactly: a long history keeps every pending table's columns until it runs.
            let is_column = |elt: &&pg_query::protobuf::Node| matches!(elt.node, Some(NodeEnum::ColumnDef(_)));
            let column_count = s.table_elts.iter().filter(is_column).count();
            let mut columns = Vec::with_capacity(column_count);
            let mut constraints = Vec::with_capacity(s.table_elts.len() - column_count);
            for elt in &s.table_elts {
                match elt.node.as_ref() {
                    Some(NodeEnum::ColumnDef(c)) => columns.push(column(c, start)),
                    Some(NodeEnum::Constraint(c)) => constraints.push(constraint(c)),
                    _ => {}
                }
            }
            Op::CreateTable {
                table: table(s.relation.as_ref()),
                columns,
                constraints,
                as_select: false,
                if_not_exists: s.if_not_exists,
            }
        }
        NodeEnum::CreateTableAsStmt(s) if s.objtype() == ObjectType::ObjectTable => Op::CreateTable {
            table: table(s.into.as_ref().and_then(|i| i.rel.as_ref())),
            columns: Vec::new(),
            constraints: Vec::new(),
            as_select: true,
            if_not_exists: s.if_not_exists,
        },
        NodeEnum::AlterTableStmt(s) if s.objtype() == ObjectType::ObjectTable => Op::AlterTable {
            table: table(s.relation.as_ref()),
            actions: s
                .cmds
                .iter()
                .filter_map(|c| match c.node.as_ref()? {
                    NodeEnum::AlterTableCmd(cmd) => Some(alter_action(cmd, start)),
                    _ => None,
                })
                .collect(),
        },
        NodeEnum::IndexStmt(s) => Op::CreateIndex {
            name: name_of(&s.idxname),
            table: table(s.relation.as_ref()),
            columns: strings(&s.index_params),
            unique: s.unique,
            concurrently: s.concurrent,
        },
        NodeEnum::DropStmt(s) => match s.remove_type() {
            ObjectType::ObjectIndex => Op::DropIndex {
                names: s.objects.iter().filter_map(range_name).map(|t| t.to_string()).collect(),
                concurrently: s.concurrent,
            },
            ObjectType::ObjectTable => Op::DropTable {
                tables: s.objects.iter().filter_map(range_name).collect(),
                cascade: behavior_cascade(s.behavior),
            },
            kind @ (ObjectType::ObjectView | ObjectType::ObjectMatview) => Op::DropView {
                views: s.objects.iter().filter_map(range_name).collect(),
                cascade: behavior_cascade(s.behavior),
                materialized: kind == ObjectType::ObjectMatview,
            },
            other => Op::Other { kind: format!("DROP {}", object_kind(other)) },
        },
        NodeEnum::ViewStmt(s) => Op::CreateView { view: table(s.view.as_ref()), materialized: false },
        NodeEnum::CreateTableAsStmt(s) if s.objtype() == ObjectType::ObjectMatview => {
            Op::CreateView { view: table(s.into.as_ref().and_then(|i| i.rel.as_ref())), materialized: true }
        }
        NodeEnum::CommentStmt(s) => Op::Comment { on: comment_on(s) },
        NodeEnum::RenameStmt(s) => match (s.rename_type(), s.relation_type()) {
            (ObjectType::ObjectTable, _) => {
                let from = table(s.relation.as_ref());
                let to = TableName { schema: from.schema.clone(), name: s.newname.clone() };
                Op::RenameTable { from, to }
            }
            (ObjectType::ObjectColumn, ObjectType::ObjectTable) => Op::AlterTable {
                table: table(s.relation.as_ref()),
                actions: vec![(AlterAction::RenameColumn { from: s.subname.clone(), to: s.newname.clone() }, start)],
            },
            (other, _) => Op::Other { kind: format!("ALTER {} RENAME", object_kind(other)) },
        },
        NodeEnum::TruncateStmt(s) => Op::Truncate {
            tables: s.relations.iter().filter_map(range_name).collect(),
            cascade: behavior_cascade(s.behavior),
        },
        NodeEnum::InsertStmt(s) => Op::Insert { table: table(s.relation.as_ref()) },
        NodeEnum::UpdateStmt(s) => {
            Op::Update { table: table(s.relation.as_ref()), has_where: s.where_clause.is_some() }
        }
        NodeEnum::DeleteStmt(s) => {
            Op::Delete { table: table(s.relation.as_ref()), has_where: s.where_clause.is_some() }
        }
        NodeEnum::VacuumStmt(s) if s.is_vacuumcmd => Op::Vacuum {
            full: s
                .options
                .iter()
                .any(|o| matches!(o.node.as_ref(), Some(NodeEnum::DefElem(d)) if d.defname == "full")),
            tables: s
                .rels
                .iter()
                .filter_map(|r| match r.node.as_ref()? {
                    NodeEnum::VacuumRelation(v) => Some(table(v.relation.as_ref())),
                    _ => None,
                })
                .collect(),
        },
        NodeEnum::ClusterStmt(s) => Op::Cluster { table: s.relation.as_ref().map(|r| table(Some(r))) },
        NodeEnum::ReindexStmt(s) => Op::Reindex {
            concurrently: s
                .params
                .iter()
                .any(|o| matches!(o.node.as_ref(), Some(NodeEnum::DefElem(d)) if d.defname == "concurrently")),
            target: s.relation.as_ref().map(|r| table(Some(r)).to_string()).unwrap_or_else(|| s.name.clone()),
        },
        NodeEnum::CreateTrigStmt(s) => {
            Op::CreateTrigger { name: s.trigname.clone(), table: table(s.relation.as_ref()) }
        }
        NodeEnum::AlterEnumStmt(s) if s.old_val.is_empty() => Op::AddEnumValue { type_name: qualified(&s.type_name) },
        NodeEnum::TransactionStmt(s) => Op::Transaction(match s.kind() {
            TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart => TxKind::Begin,
            TransactionStmtKind::TransStmtCommit => TxKind::Commit,
            TransactionStmtKind::TransStmtRollback => TxKind::Rollback,
            _ => TxKind::Other,
        }),
        other => Op::Other { kind: statement_kind(other) },
    }
}

/// What a `COMMENT ON` is about: a relation or a column of one, an index, or another object.
fn comment_on(s: &protobuf::CommentStmt) -> CommentOn {
    let names = match s.object.as_deref().and_then(|o| o.node.as_ref()) {
        Some(NodeEnum::List(l)) => strings(&l.items),
        _ => Vec::new(),
    };
    let kind = s.objtype();
    let found = match kind {
        ObjectType::ObjectTable | ObjectType::ObjectView | ObjectType::ObjectMatview => {
            let kind = match kind {
                ObjectType::ObjectTable => RelationKind::Table,
                ObjectType::ObjectView => RelationKind::View,
                _ => RelationKind::MaterializedView,
            };
            name_of_parts(&names).map(|table| CommentOn::Relation { table, kind })
        }
        // The column's name last, its relation's before it.
        ObjectType::ObjectColumn => names.split_last().and_then(|(_, t)| name_of_parts(t)).map(CommentOn::Column),
        ObjectType::ObjectIndex => names.last().map(|n| CommentOn::Index(n.clone())),
        _ => None,
    };
    found.unwrap_or_else(|| CommentOn::Other(object_kind(kind)))
}

fn object_kind(kind: ObjectType) -> String {
    format!("{kind:?}").trim_start_matches("Object").to_uppercase()
}

/// `CreateFunctionStmt` → `CREATE FUNCTION`, `SelectStmt` → `SELECT`.
fn statement_kind(node: &NodeEnum) -> String {
    let debug = format!("{node:?}");
    let name = debug.split('(').next().unwrap_or("").trim_end_matches("Stmt");
    let mut words = Vec::new();
    let mut word = String::new();
    for ch in name.chars() {
        if ch.is_uppercase() && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        word.push(ch.to_ascii_uppercase());
    }
    words.push(word);
    words.join(" ")
}

/// Where PostgreSQL's parser stopped in `sql` (a byte offset), which the
/// `pg_query` crate does not pass on: libpg_query's own error carries it
/// (`cursorpos`, 1-based, in characters). Called only after a failed parse.
/// The workspace's one use of `unsafe`: two calls into the C library the
/// `pg_query` crate already links, with the structs of its header.
#[allow(unsafe_code)]
fn error_position(sql: &str) -> Option<usize> {
    use std::ffi::{CString, c_char, c_int};

    /// libpg_query's `PgQueryError` (pg_query.h).
    #[repr(C)]
    struct PgQueryError {
        message: *mut c_char,
        funcname: *mut c_char,
        filename: *mut c_char,
        lineno: c_int,
        cursorpos: c_int,
        context: *mut c_char,
    }
    /// libpg_query's `PgQueryParseResult` (pg_query.h).
    #[repr(C)]
    struct PgQueryParseResult {
        parse_tree: *mut c_char,
        stderr_buffer: *mut c_char,
        error: *mut PgQueryError,
    }
    // Linked in by the pg_query crate, which builds libpg_query.
    unsafe extern "C" {
        fn pg_query_parse(input: *const c_char) -> PgQueryParseResult;
        fn pg_query_free_parse_result(result: PgQueryParseResult);
    }

    let input = CString::new(sql).ok()?;
    // SAFETY: `input` is a valid C string that outlives the call; the result
    // is read before it is freed, once, by the library's own function.
    let chars = unsafe {
        let result = pg_query_parse(input.as_ptr());
        let position = if result.error.is_null() { 0 } else { (*result.error).cursorpos };
        pg_query_free_parse_result(result);
        position
    };
    let chars = usize::try_from(chars).ok().filter(|c| *c > 0)?;
    Some(sql.char_indices().nth(chars - 1).map_or(sql.len(), |(i, _)| i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_and_comments_name_what_they_change() {
        let t =
            |schema: Option<&str>, name: &str| TableName { schema: schema.map(str::to_owned), name: name.to_owned() };
        assert_eq!(
            one("CREATE OR REPLACE VIEW s.v AS SELECT 1"),
            Op::CreateView { view: t(Some("s"), "v"), materialized: false }
        );
        assert_eq!(
            one("CREATE MATERIALIZED VIEW m AS SELECT 1"),
            Op::CreateView { view: t(None, "m"), materialized: true }
        );
        assert_eq!(
            one("DROP MATERIALIZED VIEW IF EXISTS a, s.b CASCADE"),
            Op::DropView { views: vec![t(None, "a"), t(Some("s"), "b")], cascade: true, materialized: true }
        );
        assert_eq!(one("DROP VIEW v"), Op::DropView { views: vec![t(None, "v")], cascade: false, materialized: false });
        let comment = |sql: &str| match one(sql) {
            Op::Comment { on } => on,
            other => panic!("{other:?}"),
        };
        let relation = |table, kind| CommentOn::Relation { table, kind };
        assert_eq!(comment("COMMENT ON TABLE s.t IS 'x'"), relation(t(Some("s"), "t"), RelationKind::Table));
        assert_eq!(comment("COMMENT ON VIEW v IS 'x'"), relation(t(None, "v"), RelationKind::View));
        assert_eq!(
            comment("COMMENT ON MATERIALIZED VIEW m IS 'x'"),
            relation(t(None, "m"), RelationKind::MaterializedView)
        );
        assert_eq!(comment("COMMENT ON COLUMN s.t.c IS 'x'"), CommentOn::Column(t(Some("s"), "t")));
        assert_eq!(comment("COMMENT ON COLUMN t.c IS 'x'"), CommentOn::Column(t(None, "t")));
        assert_eq!(comment("COMMENT ON INDEX s.i IS 'x'"), CommentOn::Index("i".to_owned()));
        assert_eq!(comment("COMMENT ON FUNCTION f() IS 'x'"), CommentOn::Other("FUNCTION".to_owned()));
        assert_eq!(comment("COMMENT ON CONSTRAINT c ON t IS 'x'"), CommentOn::Other("TABCONSTRAINT".to_owned()));
    }

    fn one(sql: &str) -> Op {
        let mut ops = parse(sql).unwrap();
        assert_eq!(ops.len(), 1, "{ops:?}");
        ops.remove(0)
    }

    #[test]
    fn alter_table_actions() {
        let Op::AlterTable { table, actions } = one(
            "ALTER TABLE app.orders ADD COLUMN total numeric(10,2) NOT NULL DEFAULT 0, ALTER COLUMN note TYPE varchar(20), \
             ALTER COLUMN status SET NOT NULL, ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID, \
             VALIDATE CONSTRAINT fk2, DROP COLUMN legacy",
        ) else {
            panic!()
        };
        assert_eq!(table.to_string(), "app.orders");
        let kinds: Vec<&AlterAction> = actions.iter().map(|(a, _)| a).collect();
        let AlterAction::AddColumn(c) = kinds[0] else { panic!("{kinds:?}") };
        assert_eq!((c.name.as_str(), c.data_type.as_str(), c.not_null), ("total", "numeric(10,2)", true));
        assert_eq!(c.default.as_ref().unwrap().text, "0");
        assert_eq!(
            kinds[1],
            &AlterAction::AlterColumnType {
                column: "note".into(),
                data_type: "character varying(20)".into(),
                using: None
            }
        );
        assert_eq!(kinds[2], &AlterAction::SetNotNull { column: "status".into() });
        let AlterAction::AddConstraint(Constraint::ForeignKey { references, not_valid, columns, .. }) = kinds[3] else {
            panic!()
        };
        assert_eq!(
            (references.name.as_str(), *not_valid, columns.as_slice()),
            ("users", true, &["user_id".to_owned()][..])
        );
        assert_eq!(kinds[4], &AlterAction::ValidateConstraint { name: "fk2".into() });
        assert_eq!(kinds[5], &AlterAction::DropColumn { column: "legacy".into() });
    }

    #[test]
    fn indexes_drops_and_maintenance() {
        assert_eq!(
            one("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a, lower(b))"),
            Op::CreateIndex {
                name: Some("i".into()),
                table: TableName::bare("t"),
                columns: vec!["a".into(), "lower(b)".into()],
                unique: true,
                concurrently: true
            }
        );
        assert_eq!(one("DROP INDEX CONCURRENTLY s.i"), Op::DropIndex { names: vec!["s.i".into()], concurrently: true });
        assert_eq!(
            one("DROP TABLE a, b CASCADE"),
            Op::DropTable { tables: vec![TableName::bare("a"), TableName::bare("b")], cascade: true }
        );
        assert_eq!(one("TRUNCATE t CASCADE"), Op::Truncate { tables: vec![TableName::bare("t")], cascade: true });
        assert_eq!(one("VACUUM (FULL) t"), Op::Vacuum { full: true, tables: vec![TableName::bare("t")] });
        assert_eq!(one("REINDEX (CONCURRENTLY) TABLE t"), Op::Reindex { concurrently: true, target: "t".into() });
        assert_eq!(one("ALTER TYPE mood ADD VALUE 'meh'"), Op::AddEnumValue { type_name: "mood".into() });
        assert_eq!(
            one("ALTER TABLE t RENAME TO u"),
            Op::RenameTable { from: TableName::bare("t"), to: TableName::bare("u") }
        );
        assert_eq!(one("COMMIT"), Op::Transaction(TxKind::Commit));
        assert_eq!(
            one("CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql"),
            Op::Other { kind: "CREATE FUNCTION".into() }
        );
    }

    #[test]
    fn columns_keep_their_attributes_and_defaults_their_functions() {
        let Op::CreateTable { columns, constraints, .. } =
            one("CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at timestamptz DEFAULT now(), \
             token uuid DEFAULT gen_random_uuid(), tags text[], UNIQUE (token))")
        else {
            panic!()
        };
        assert!(columns[0].identity && columns[0].primary_key && columns[0].not_null);
        assert_eq!(columns[1].data_type, "timestamp with time zone");
        assert_eq!(columns[1].default.as_ref().unwrap().functions, ["now"]);
        assert_eq!(columns[2].default.as_ref().unwrap().text, "gen_random_uuid()");
        assert_eq!(columns[3].data_type, "text[]");
        assert!(matches!(&constraints[0], Constraint::Unique { columns, .. } if columns == &["token".to_owned()]));
    }

    #[test]
    fn dml_knows_its_where() {
        assert_eq!(one("UPDATE t SET a = 1"), Op::Update { table: TableName::bare("t"), has_where: false });
        assert_eq!(one("DELETE FROM t WHERE a = 1"), Op::Delete { table: TableName::bare("t"), has_where: true });
        assert!(parse("ALTER TABLE t ADD COLUMN").is_err());
    }

    #[test]
    fn do_blocks_are_read_for_the_statements_they_run() {
        let ops = parse(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'fk') THEN \
             ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id); END IF; END $$",
        )
        .unwrap();
        assert!(
            matches!(&ops[..], [Op::AlterTable { table, actions }] if table.name == "orders"
                && matches!(actions[0].0, AlterAction::AddConstraint(Constraint::ForeignKey { .. }))),
            "{ops:?}"
        );
        let dynamic = parse("DO $$ BEGIN UPDATE t SET a = 1; EXECUTE 'DROP TABLE ' || 'x'; END $$").unwrap();
        assert!(matches!(&dynamic[..], [Op::Update { .. }, Op::Other { kind }] if kind == DO_UNSEEN), "{dynamic:?}");
        let other = parse("DO LANGUAGE plperl $$ 1; $$").unwrap();
        assert!(matches!(&other[..], [Op::Other { kind }] if kind == DO_UNSEEN), "{other:?}");
    }
}
