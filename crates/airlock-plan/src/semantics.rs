//! What statements do to types and columns, engine by engine: the facts
//! lint's rules and plan's effects both read, kept in one place so that the
//! two never disagree about whether a change rewrites, copies or loses
//! something. Pure.

use airlock_core::schema::Column;
use airlock_sql::parse::ColumnSpec;

// PostgreSQL: which type changes are free.

/// `character varying(20)` → (`character varying`, [20]).
fn split_type(t: &str) -> (&str, Vec<u32>) {
    match t.split_once('(') {
        Some((base, rest)) => {
            let mods = rest.trim_end_matches(')').split(',').filter_map(|m| m.trim().parse().ok()).collect();
            (base.trim(), mods)
        }
        None => (t.trim(), Vec::new()),
    }
}

/// Whether PostgreSQL changes `from` to `to` without rewriting or scanning.
pub fn binary_coercible(from: &str, to: &str) -> bool {
    let (from_base, from_mods) = split_type(from);
    let (to_base, to_mods) = split_type(to);
    let varchar = |b: &str| b == "character varying" || b == "varchar";
    match (from_base, to_base) {
        _ if from == to => true,
        (f, "text") if varchar(f) => true,
        ("text", t) if varchar(t) => to_mods.is_empty(),
        (f, t) if varchar(f) && varchar(t) => {
            to_mods.is_empty() || (from_mods.len() == 1 && to_mods[0] >= from_mods[0])
        }
        ("numeric", "numeric") => match (from_mods.as_slice(), to_mods.as_slice()) {
            (_, []) => true,
            ([p, s], [q, t]) => q >= p && s == t,
            ([p], [q]) => q >= p,
            _ => false,
        },
        ("bit varying", "bit varying") => to_mods.is_empty() || (from_mods.len() == 1 && to_mods[0] >= from_mods[0]),
        _ => false,
    }
}

// MySQL/MariaDB: which type changes copy the table.

/// Bytes per character of a character set.
fn bytes_per_char(charset: Option<&str>) -> u32 {
    match charset.unwrap_or("utf8mb4").to_ascii_lowercase().as_str() {
        "latin1" | "ascii" | "binary" => 1,
        "utf8" | "utf8mb3" => 3,
        "ucs2" | "utf16" => 2,
        _ => 4,
    }
}

/// MySQL's own spelling of a type's base name.
fn canonical(base: &str) -> &str {
    match base {
        "integer" => "int",
        "bool" | "boolean" => "tinyint",
        "real" | "double precision" => "double",
        "dec" | "fixed" | "numeric" => "decimal",
        "character varying" => "varchar",
        "character" => "char",
        other => other,
    }
}

/// `int(11) unsigned` → (`int`, None); `varchar(50)` → (`varchar`, Some(50)).
fn shape(data_type: &str) -> (String, Option<u32>) {
    let t = data_type.to_ascii_lowercase().replace(" unsigned", "").replace(" zerofill", "");
    let t = if t == "decimal" || t == "numeric" { "decimal(10,0)".to_owned() } else { t };
    match t.split_once('(') {
        Some((base, rest)) => {
            let n = rest.split([')', ',']).next().and_then(|n| n.trim().parse().ok());
            let base = canonical(base.trim()).to_owned();
            let keeps_length =
                ["varchar", "char", "varbinary", "binary", "decimal", "numeric"].contains(&base.as_str());
            (base, if keeps_length { n } else { None })
        }
        None => (canonical(t.trim()).to_owned(), None),
    }
}

/// Why changing `from` to `to` needs a table copy, if it does.
pub fn mysql_needs_copy(from: &str, to: &str, charset: Option<&str>) -> Option<String> {
    let (from_base, from_len) = shape(from);
    let (to_base, to_len) = shape(to);
    if from_base != to_base {
        return Some(format!("the type changes from {from} to {to}"));
    }
    match (from_base.as_str(), from_len, to_len) {
        ("varchar" | "varbinary", Some(a), Some(b)) if b < a => Some(format!("{from_base} shrinks from {a} to {b}")),
        ("varchar" | "varbinary", Some(a), Some(b)) => {
            let bpc = if from_base == "varbinary" { 1 } else { bytes_per_char(charset) };
            (a * bpc <= 255 && b * bpc > 255).then(|| {
                format!(
                    "{from_base}({a}) grows to ({b}): past 255 bytes in {}, so the length prefix grows",
                    charset.unwrap_or("utf8mb4")
                )
            })
        }
        (_, a, b) if a != b => Some(format!("the type changes from {from} to {to}")),
        _ => None,
    }
}

// MySQL/MariaDB: what a MODIFY/CHANGE that repeats too little drops.

/// What `new` loses of `live`, as SQL attribute names.
pub fn mysql_lost_attributes(live: &Column, new: &ColumnSpec) -> Vec<&'static str> {
    let mut lost = Vec::new();
    if live.auto_increment && !new.auto_increment {
        lost.push("AUTO_INCREMENT");
    }
    if live.default.is_some() && new.default.is_none() && !new.auto_increment {
        lost.push("DEFAULT");
    }
    if !live.nullable && !new.not_null && !new.primary_key && !new.explicit_null {
        lost.push("NOT NULL");
    }
    if live.unsigned && !new.unsigned {
        lost.push("UNSIGNED");
    }
    if live.comment.as_deref().is_some_and(|c| !c.is_empty()) && new.comment.is_none() {
        lost.push("COMMENT");
    }
    if live.charset.is_some() && new.charset.is_none() {
        lost.push("CHARACTER SET");
    }
    if live.collation.is_some() && new.collation.is_none() {
        lost.push("COLLATE");
    }
    if live.on_update.is_some() && new.on_update.is_none() {
        lost.push("ON UPDATE");
    }
    lost
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// A MySQL identifier as SQL: backticked when it is not a plain word or is a
/// word MySQL reserves (the common ones a column is named after).
fn ident(name: &str) -> String {
    const RESERVED: [&str; 24] = [
        "key",
        "keys",
        "order",
        "group",
        "index",
        "table",
        "select",
        "from",
        "where",
        "desc",
        "asc",
        "by",
        "interval",
        "range",
        "rank",
        "row",
        "rows",
        "status",
        "condition",
        "check",
        "default",
        "match",
        "references",
        "usage",
    ];
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain && !RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        name.to_owned()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

/// The statement with every live attribute kept.
pub fn mysql_corrected_column(table: &str, old_name: Option<&str>, live: &Column, new: &ColumnSpec) -> String {
    let table = table.split('.').map(ident).collect::<Vec<_>>().join(".");
    let mut sql = match old_name {
        Some(old) => format!("ALTER TABLE {table} CHANGE {} {} {}", ident(old), ident(&new.name), new.data_type),
        None => format!("ALTER TABLE {table} MODIFY {} {}", ident(&new.name), new.data_type),
    };
    if live.unsigned && !new.unsigned {
        sql.push_str(" UNSIGNED");
    }
    if let Some(charset) = new.charset.as_ref().or(live.charset.as_ref()) {
        sql.push_str(&format!(" CHARACTER SET {charset}"));
    }
    if let Some(collation) = new.collation.as_ref().or(live.collation.as_ref()) {
        sql.push_str(&format!(" COLLATE {collation}"));
    }
    if new.not_null || (!live.nullable && !new.explicit_null) {
        sql.push_str(" NOT NULL");
    } else if new.explicit_null {
        sql.push_str(" NULL");
    }
    if new.auto_increment || live.auto_increment {
        sql.push_str(" AUTO_INCREMENT");
    } else if let Some(default) = new.default.as_ref().map(|d| d.text.clone()).or_else(|| live.default.clone()) {
        sql.push_str(&format!(" DEFAULT {default}"));
    }
    if let Some(on_update) = new.on_update.as_ref().or(live.on_update.as_ref()) {
        sql.push_str(&format!(" ON UPDATE {on_update}"));
    }
    if let Some(comment) = new.comment.as_ref().or(live.comment.as_ref()).filter(|c| !c.is_empty()) {
        sql.push_str(&format!(" COMMENT {}", quote(comment)));
    }
    sql
}

// PostgreSQL: defaults that are computed per row.

/// Built-in functions PostgreSQL marks volatile that people use as defaults.
pub const VOLATILE_FUNCTIONS: &[&str] = &[
    "random",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "txid_current",
    "setseed",
    "gen_random_bytes",
    "uuidv7",
    "uuidv4",
];

/// Built-in functions that are immutable or stable (no rewrite).
pub const NOT_VOLATILE_FUNCTIONS: &[&str] = &[
    "now",
    "current_timestamp",
    "transaction_timestamp",
    "statement_timestamp",
    "lower",
    "upper",
    "coalesce",
    "to_jsonb",
    "jsonb_build_object",
    "json_build_object",
    "array",
    "make_interval",
    "to_timestamp",
    "length",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coercible_pairs() {
        assert!(binary_coercible("character varying(20)", "character varying(40)"));
        assert!(binary_coercible("character varying(20)", "text"));
        assert!(binary_coercible("numeric(10,2)", "numeric(12,2)"));
        assert!(!binary_coercible("character varying(40)", "character varying(20)"));
        assert!(!binary_coercible("integer", "bigint"));
        assert!(!binary_coercible("text", "integer"));
    }

    #[test]
    fn which_changes_copy() {
        assert!(mysql_needs_copy("int(11)", "bigint", None).is_some());
        assert!(mysql_needs_copy("varchar(50)", "varchar(60)", Some("utf8mb4")).is_none());
        assert!(mysql_needs_copy("varchar(50)", "varchar(100)", Some("utf8mb4")).is_some(), "200 → 400 bytes");
        assert!(mysql_needs_copy("varchar(50)", "varchar(100)", Some("latin1")).is_none());
        assert!(mysql_needs_copy("int(11) unsigned", "int unsigned", None).is_none());
        assert!(mysql_needs_copy("int(11)", "INTEGER", None).is_none());
        assert!(mysql_needs_copy("tinyint(1)", "BOOLEAN", None).is_none());
        assert!(mysql_needs_copy("decimal(10,0)", "DECIMAL", None).is_none());
    }
}
