//! `drift`: the schema of this database compared with another's (staging
//! with production, a copy with its source). Reads both, writes neither.

use airlock_core::snapshot::{Attributes, Change, Difference, SchemaSnapshot, diff};
use airlock_driver::DatabaseUrl;
use serde::Serialize;

use crate::Options;
use crate::error::ExecError;

/// One difference, as the JSON contract has it: `expected` is the reference
/// database's side, `actual` this database's.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DriftEntry {
    /// `column public.orders.note`, `index public.orders.orders_user_idx`...
    pub object: String,
    /// `missing` (only in the reference), `unexpected` (only here) or `changed`.
    pub change: &'static str,
    /// For `changed`: which attribute (`type`, `default`, `definition`...).
    pub attribute: Option<String>,
    /// The reference's value (for missing objects, their attributes).
    pub expected: Option<String>,
    /// This database's value.
    pub actual: Option<String>,
}

/// What `drift` found.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    /// This database (password hidden).
    pub database: String,
    /// The reference it was compared with.
    pub against: String,
    /// Every difference, in object order; empty when the schemas match.
    pub differences: Vec<DriftEntry>,
}

/// Compares this database's schema with `against`'s. Both are read at the
/// same time, on read-only connections.
pub async fn drift(options: &Options, against: &DatabaseUrl) -> Result<DriftReport, ExecError> {
    if options.url.engine() != against.engine() {
        return Err(ExecError::Usage(format!(
            "cannot compare a {} database with a {} one ({against})",
            options.url.engine().name(),
            against.engine().name()
        )));
    }
    let read = |url: &DatabaseUrl| {
        let url = url.clone();
        async move {
            let mut driver = crate::connect_read_only(&url).await.map_err(ExecError::Connect)?;
            driver.schema_snapshot().await.map_err(ExecError::db(format!("reading the schema of {url}")))
        }
    };
    let (reference, live) = tokio::try_join!(read(against), read(&options.url))?;
    Ok(DriftReport {
        database: options.url.to_string(),
        against: against.to_string(),
        differences: entries(&reference, &live),
    })
}

/// The differences from `reference` to `live`, as drift reports them.
pub fn entries(reference: &SchemaSnapshot, live: &SchemaSnapshot) -> Vec<DriftEntry> {
    diff(reference, live).iter().map(entry).collect()
}

fn entry(d: &Difference) -> DriftEntry {
    let object = d.object.to_string();
    match &d.change {
        Change::Removed => DriftEntry {
            object,
            change: "missing",
            attribute: None,
            expected: d.before.as_ref().map(render),
            actual: None,
        },
        Change::Added => DriftEntry {
            object,
            change: "unexpected",
            attribute: None,
            expected: None,
            actual: d.after.as_ref().map(render),
        },
        Change::Changed { attribute, before, after } => DriftEntry {
            object,
            change: "changed",
            attribute: Some(attribute.clone()),
            expected: before.clone(),
            actual: after.clone(),
        },
    }
}

/// An object's attributes on one line: its definition when it has one, else `key=value, ...`.
pub fn render(attributes: &Attributes) -> String {
    if let Some(definition) = attributes.get("definition") {
        return definition.clone();
    }
    attributes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::snapshot::{ObjectKind, ObjectPath};

    #[test]
    fn missing_unexpected_and_changed_read_from_the_reference_to_this_database() {
        let mut reference = SchemaSnapshot::default();
        let t = |name: &str| ObjectPath::new(ObjectKind::Table, Some("public"), name);
        reference.insert(t("orders"), Attributes::new());
        let idx = ObjectPath::of_table(ObjectKind::Index, Some("public"), "orders", "orders_user");
        reference.insert(idx.clone(), [("definition".to_owned(), "btree (user_id)".to_owned())].into());
        let mut live = reference.clone();
        live.objects.remove(&idx);
        live.insert(t("scratch"), [("comment".to_owned(), "tmp".to_owned())].into());
        live.insert(t("orders"), [("comment".to_owned(), "hot".to_owned())].into());
        let found = entries(&reference, &live);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!((found[0].change, found[0].attribute.as_deref()), ("changed", Some("comment")));
        assert_eq!((found[0].expected.as_deref(), found[0].actual.as_deref()), (None, Some("hot")));
        assert_eq!(found[1].object, "table public.scratch");
        assert_eq!((found[1].change, found[1].actual.as_deref()), ("unexpected", Some("comment=tmp")));
        assert_eq!(found[2].object, "index public.orders.orders_user");
        assert_eq!((found[2].change, found[2].expected.as_deref()), ("missing", Some("btree (user_id)")));
    }
}
