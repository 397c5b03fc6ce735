//! Database URLs: which engine, and how to print them without the password.

use std::fmt;

/// A database engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres,
    /// MySQL or MariaDB (`mysql://`, `mariadb://`).
    MySql,
    /// SQLite (`sqlite://PATH`, `sqlite:PATH`).
    Sqlite,
}

impl Engine {
    /// Every engine, in the order `--dialect` lists them.
    pub const ALL: [Engine; 3] = [Engine::Postgres, Engine::MySql, Engine::Sqlite];

    /// The engine of a name as a person writes it (`postgres`, `postgresql`,
    /// `mysql`, `mariadb`, `sqlite`), in any case.
    pub fn from_name(name: &str) -> Option<Engine> {
        match name.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Some(Engine::Postgres),
            "mysql" | "mariadb" => Some(Engine::MySql),
            "sqlite" => Some(Engine::Sqlite),
            _ => None,
        }
    }

    /// Lower-case name for messages and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::MySql => "mysql",
            Engine::Sqlite => "sqlite",
        }
    }
}

/// Why a URL is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("database URL `{shown}`: {why}")]
pub struct UrlError {
    /// The URL with its password hidden.
    pub shown: String,
    /// What is wrong.
    pub why: String,
}

/// A database URL. `Display` hides the password; [`DatabaseUrl::expose`] does not.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    raw: String,
    engine: Engine,
}

impl DatabaseUrl {
    /// Recognizes the engine from the scheme.
    pub fn parse(raw: &str) -> Result<DatabaseUrl, UrlError> {
        let raw = raw.trim();
        let lower = raw.to_ascii_lowercase();
        let engine = if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Engine::Postgres
        } else if lower.starts_with("mysql://") || lower.starts_with("mariadb://") {
            Engine::MySql
        } else if lower.starts_with("sqlite:") {
            Engine::Sqlite
        } else {
            return Err(UrlError {
                shown: redact(raw),
                why: "unknown scheme; use postgres://, mysql://, mariadb:// or sqlite:PATH".into(),
            });
        };
        let url = DatabaseUrl { raw: raw.to_owned(), engine };
        if engine != Engine::Sqlite {
            url::Url::parse(raw).map_err(|e| UrlError { shown: redact(raw), why: e.to_string() })?;
        } else if url.sqlite_path().is_none_or(str::is_empty) {
            return Err(UrlError { shown: redact(raw), why: "no file path after `sqlite:`".into() });
        }
        Ok(url)
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The full URL, password included: only for handing to a driver.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The same server and credentials with another database: `name` is a
    /// plain identifier (a scratch database beside this one). For SQLite,
    /// `name` is the other file's path.
    /// Never the same URL back: a scratch database must not be the target.
    pub fn with_database(&self, name: &str) -> Result<DatabaseUrl, UrlError> {
        let raw = match self.engine {
            Engine::Sqlite => format!("sqlite:{name}"),
            _ => {
                let mut url = url::Url::parse(&self.raw)
                    .map_err(|e| UrlError { shown: redact(&self.raw), why: e.to_string() })?;
                url.set_path(&format!("/{name}"));
                url.to_string()
            }
        };
        if raw == self.raw {
            return Err(UrlError { shown: redact(&raw), why: format!("already names the database `{name}`") });
        }
        Ok(DatabaseUrl { raw, engine: self.engine })
    }

    /// For `sqlite:` URLs, the file path (query string removed).
    pub fn sqlite_path(&self) -> Option<&str> {
        if self.engine != Engine::Sqlite {
            return None;
        }
        let rest = &self.raw["sqlite:".len()..];
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        Some(rest.split('?').next().unwrap_or(rest))
    }
}

/// Replaces every password in a URL-like text with `***`: the userinfo's
/// (up to the last `@`, so an unencoded `/`, `?` or `#` in it is still hidden)
/// and query parameters whose name says secret (`password`, `sslpassword`,
/// `*token*`, `*secret*`). When in doubt it hides more, never less.
pub fn redact(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else { return raw.to_owned() };
    let (head, rest) = raw.split_at(scheme_end + 3);
    let rest = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{}", &userinfo[..colon], &rest[at..]),
                None => rest.to_owned(),
            }
        }
        None => rest.to_owned(),
    };
    let Some(q) = rest.find('?') else { return format!("{head}{rest}") };
    let (before, query) = rest.split_at(q + 1);
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret(key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{head}{before}{}", query.join("&"))
}

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token"].iter().any(|word| key.contains(word))
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.raw))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_database_on_the_same_server_is_never_this_one() {
        let url = DatabaseUrl::parse("postgres://app:secret@db:5432/shop?sslmode=require").unwrap();
        let scratch = url.with_database("airlock_scratch_1").unwrap();
        assert_eq!(scratch.expose(), "postgres://app:secret@db:5432/airlock_scratch_1?sslmode=require");
        assert!(url.with_database("shop").is_err(), "the scratch database would be the target");
        let file = DatabaseUrl::parse("sqlite:/srv/app.db").unwrap();
        assert_eq!(file.with_database("/tmp/x.db").unwrap().sqlite_path(), Some("/tmp/x.db"));
    }

    #[test]
    fn recognizes_engines() {
        assert_eq!(DatabaseUrl::parse("postgresql://u@h/db").unwrap().engine(), Engine::Postgres);
        assert_eq!(DatabaseUrl::parse("mariadb://u@h/db").unwrap().engine(), Engine::MySql);
        let s = DatabaseUrl::parse("sqlite://data/app.db?mode=rwc").unwrap();
        assert_eq!(s.sqlite_path(), Some("data/app.db"));
        assert_eq!(DatabaseUrl::parse("sqlite:app.db").unwrap().sqlite_path(), Some("app.db"));
        assert!(DatabaseUrl::parse("oracle://x").is_err());
        assert!(DatabaseUrl::parse("sqlite:").is_err());
    }

    #[test]
    fn never_shows_the_password() {
        let url = DatabaseUrl::parse("postgres://app:s3cr%40t@db.internal:5432/shop").unwrap();
        assert_eq!(url.to_string(), "postgres://app:***@db.internal:5432/shop");
        assert!(!format!("{url:?}").contains("s3cr"));
        assert_eq!(redact("mysql://root@h/x"), "mysql://root@h/x");
        let err = DatabaseUrl::parse("oracle://u:hunter2@h/x").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        // A password with unencoded URL delimiters, or in the query string.
        for (raw, shown) in [
            ("postgres://app:s3cr/t@db/shop", "postgres://app:***@db/shop"),
            ("postgres://app:a?b#c@db/shop", "postgres://app:***@db/shop"),
            (
                "postgres://db/shop?user=app&password=hunter2&sslmode=require",
                "postgres://db/shop?user=app&password=***&sslmode=require",
            ),
            ("mysql://db/x?PWD=hunter2", "mysql://db/x?PWD=***"),
        ] {
            assert_eq!(redact(raw), shown);
        }
        let err = DatabaseUrl::parse("postgres://app:s3cr/t@db:notaport/shop").unwrap_err().to_string();
        assert!(!err.contains("s3cr"), "{err}");
    }
}
