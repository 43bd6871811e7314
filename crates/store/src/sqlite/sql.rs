//! Statement helpers (chunked multi-row statements, placeholder lists) and row mapping.

use super::*;
pub(super) use crate::rows::{
    deployment_from, json_of, kind_of, opt_json, parse_policy, status_of, u32_of,
};

/// Splits `items` into chunks of the sizes in [`CHUNK_ROWS`], largest first.
pub(super) fn chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let size = CHUNK_ROWS
            .into_iter()
            .find(|&n| n <= items.len())
            .unwrap_or(1);
        let (head, tail) = items.split_at(size);
        items = tail;
        Some(head)
    })
}

/// Inserts `rows` with multi-row `prefix row, row, ...` statements (chunked to stay under SQLite's
/// bound-parameter limit), binding each row's values as `bind` lists them.
pub(super) fn insert_rows<'a, T>(
    conn: &Connection,
    prefix: &str,
    row: &str,
    rows: &'a [T],
    bind: impl Fn(&'a T) -> Vec<&'a dyn ToSql>,
) -> Result<()> {
    for chunk in chunks(rows) {
        let sql = values_sql(prefix, row, chunk.len());
        let params: Vec<&dyn ToSql> = chunk.iter().flat_map(&bind).collect();
        conn.prepare_cached(&sql)?.execute(params.as_slice())?;
    }
    Ok(())
}

/// Runs the statements `sql(list)` for each chunk of `ids`, where `list` is the chunk's `?, ?, ...`
/// placeholder list and every statement binds exactly the chunk's ids. Nothing runs for no ids.
pub(super) fn execute_for_ids<const N: usize>(
    conn: &Connection,
    ids: &[&str],
    sql: impl Fn(&str) -> [String; N],
) -> Result<()> {
    for chunk in chunks(ids) {
        for statement in sql(&placeholders(chunk.len())) {
            conn.prepare_cached(&statement)?
                .execute(rusqlite::params_from_iter(chunk))?;
        }
    }
    Ok(())
}

/// `prefix` followed by `rows` copies of `row`, comma-separated.
pub(super) fn values_sql(prefix: &str, row: &str, rows: usize) -> String {
    let mut sql = String::with_capacity(prefix.len() + rows * (row.len() + 2));
    sql.push_str(prefix);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql
}

/// `n` comma-separated `?` placeholders.
pub(super) fn placeholders(n: usize) -> String {
    values_sql("", "?", n)
}

/// Runs a claiming `UPDATE ... RETURNING` and reads the claimed steps (policies are filled in
/// afterwards), each with its activation count and policy overrides (JSON).
pub(super) fn steps_of(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    assigned_at: Micros,
) -> Result<Vec<(ClaimedStep, i64, Option<String>)>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, u32>(7)?,
            r.get::<_, i64>(8)?,
            r.get::<_, i64>(9)?,
            r.get::<_, Option<String>>(10)?,
            r.get::<_, u32>(11)?,
        ))
    })?;
    let mut steps = Vec::new();
    for row in rows {
        let (
            step_id,
            run_id,
            task,
            deployment,
            version,
            digest,
            input,
            attempt,
            created_at,
            activations,
            overrides,
            reruns,
        ) = row?;
        let step = ClaimedStep {
            step_id,
            run_id,
            task,
            deployment,
            version,
            digest,
            kind: DeploymentKind::default(),
            input: json_of(input)?,
            attempt,
            policy: Policy::default(),
            created_at,
            assigned_at,
            resume: Vec::new(),
            resume_attempt: attempt,
            reruns,
        };
        steps.push((step, activations, overrides));
    }
    steps.sort_by(|(a, ..), (b, ..)| (a.created_at, &a.step_id).cmp(&(b.created_at, &b.step_id)));
    Ok(steps)
}

pub(super) fn deployment_of(r: &SqliteRow) -> Result<Deployment> {
    deployment_from(
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        &r.try_get::<String, _>(3)?,
        r.try_get(4)?,
        &r.try_get::<String, _>(5)?,
    )
}

/// The newest version of deployment `name`, read on `conn`.
pub(super) fn latest_deployment(conn: &Connection, name: &str) -> Result<Option<Deployment>> {
    conn.prepare_cached(
        "SELECT name, version, digest, policy, created_at, kind FROM deployments \
         WHERE name = ? ORDER BY version DESC LIMIT 1",
    )?
    .query_row([name], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get::<_, String>(3)?,
            r.get(4)?,
            r.get::<_, String>(5)?,
        ))
    })
    .optional()?
    .map(|(name, version, digest, policy, created_at, kind)| {
        deployment_from(name, version, digest, &policy, created_at, &kind)
    })
    .transpose()
}
