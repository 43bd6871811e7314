//! Which store errors are worth waiting out.

/// True when `error` says the database could not be reached or was momentarily unavailable,
/// not that the operation is wrong: the connection was lost or refused, the pool timed out
/// waiting for one, PostgreSQL is shutting down, starting up or out of connections (SQLSTATE
/// classes `08`, `57P0x`, `53300`), or SQLite's lock was held past its busy timeout. Running the
/// same operation again later may succeed; every other error is reported as it is.
pub fn is_transient(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(e) = cause.downcast_ref::<sqlx::Error>() {
            return match e {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                    code.starts_with("08")
                        || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
                        || matches!(code.as_ref(), "5" | "6" | "261" | "262" | "517")
                }),
                _ => false,
            };
        }
        if let Some(rusqlite::Error::SqliteFailure(e, _)) = cause.downcast_ref::<rusqlite::Error>()
        {
            return matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            );
        }
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::TimedOut
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_are_transient_and_wrong_operations_are_not() {
        let lost = anyhow::Error::new(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )))
        .context("cannot claim steps");
        assert!(is_transient(&lost));
        assert!(is_transient(
            &anyhow::Error::new(sqlx::Error::PoolTimedOut).context("x")
        ));
        let busy = anyhow::Error::new(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(5),
            Some("database is locked".into()),
        ));
        assert!(is_transient(&busy));
        assert!(!is_transient(&anyhow::anyhow!("run x does not exist")));
        assert!(!is_transient(&anyhow::Error::new(sqlx::Error::RowNotFound)));
    }
}
