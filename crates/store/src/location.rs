//! Where the database is: what `--db` and `$HYPERGRAPH_DB` may say.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// A parsed database location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbLocation {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A private SQLite database that lives as long as the process (`sqlite::memory:`).
    SqliteMemory,
    /// A PostgreSQL database: the URL as given (`postgres://` or `postgresql://`).
    Postgres(String),
}

impl DbLocation {
    /// Parses a location: a file path, a `sqlite:` URL as sqlx users write them
    /// (`sqlite:///abs/path.db`, `sqlite://relative.db`, `sqlite:relative.db`, with an optional
    /// `?query`, and `sqlite::memory:`), or a `postgres://` / `postgresql://` URL. Any other URL
    /// scheme, or a `sqlite:` URL without a path, is refused with an error saying what is
    /// accepted.
    pub fn parse(text: &str) -> Result<DbLocation> {
        if text.trim().is_empty() {
            bail!("the database location is empty: give a file path or a sqlite:// URL");
        }
        let Some((scheme, rest)) = split_scheme(text) else {
            return Ok(DbLocation::Sqlite(PathBuf::from(text)));
        };
        if matches!(
            scheme.to_ascii_lowercase().as_str(),
            "postgres" | "postgresql"
        ) {
            return Ok(DbLocation::Postgres(text.to_string()));
        }
        if !scheme.eq_ignore_ascii_case("sqlite") {
            bail!(
                "unsupported database URL `{text}`: the scheme `{scheme}` is not one hypergraph \
                 knows; give a SQLite file path, a sqlite:// URL \
                 (e.g. sqlite:///var/lib/hypergraph/hg.db) or a postgres:// URL \
                 (e.g. postgres://hypergraph@db.internal/hypergraph)"
            );
        }
        if rest == ":memory:" || rest.starts_with(":memory:?") {
            return Ok(DbLocation::SqliteMemory);
        }
        let path = rest.strip_prefix("//").unwrap_or(rest);
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        if path.is_empty() {
            bail!(
                "the database URL `{text}` names no file: write sqlite:///absolute/path.db or \
                 sqlite://relative/path.db"
            );
        }
        Ok(DbLocation::Sqlite(PathBuf::from(path)))
    }
}

/// `(scheme, rest)` when `text` starts with a URL scheme (`letters:` followed by `//` or, for
/// `sqlite:`, anything); `None` for a plain path.
fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let is_scheme = !scheme.is_empty()
        && scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (is_scheme && (rest.starts_with("//") || scheme.eq_ignore_ascii_case("sqlite")))
        .then_some((scheme, rest))
}

impl std::fmt::Display for DbLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbLocation::Sqlite(path) => write!(f, "{}", path.display()),
            DbLocation::SqliteMemory => f.write_str("sqlite::memory:"),
            DbLocation::Postgres(url) => f.write_str(&crate::postgres::redact(url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> DbLocation {
        DbLocation::Sqlite(PathBuf::from(path))
    }

    #[test]
    fn paths_and_sqlite_urls() {
        assert_eq!(DbLocation::parse("hg.db").unwrap(), file("hg.db"));
        assert_eq!(DbLocation::parse("/var/hg.db").unwrap(), file("/var/hg.db"));
        assert_eq!(DbLocation::parse("./a:b.db").unwrap(), file("./a:b.db"));
        assert_eq!(
            DbLocation::parse("sqlite:///path/hg.db").unwrap(),
            file("/path/hg.db")
        );
        assert_eq!(
            DbLocation::parse("sqlite://rel/hg.db?mode=rwc").unwrap(),
            file("rel/hg.db")
        );
        assert_eq!(DbLocation::parse("SQLITE:hg.db").unwrap(), file("hg.db"));
        assert_eq!(
            DbLocation::parse("sqlite::memory:").unwrap(),
            DbLocation::SqliteMemory
        );
    }

    #[test]
    fn postgres_urls() {
        for url in ["postgres://u@h/db", "postgresql://u:pw@h:5433/db?schema=a"] {
            assert_eq!(
                DbLocation::parse(url).unwrap(),
                DbLocation::Postgres(url.to_string())
            );
        }
        assert_eq!(
            DbLocation::parse("postgresql://u:pw@h:5433/db")
                .unwrap()
                .to_string(),
            "postgresql://u:***@h:5433/db"
        );
    }

    #[test]
    fn other_schemes_and_empty_urls_are_refused() {
        for (text, says) in [
            ("mysql://u@h/db", "`mysql`"),
            ("http://example.com/hg.db", "`http`"),
            ("sqlite://", "names no file"),
            ("sqlite:", "names no file"),
            ("sqlite://?mode=rwc", "names no file"),
            ("", "empty"),
        ] {
            let err = DbLocation::parse(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
