//! Suggestions for mistyped names.

/// The names in `candidates` closest to `name`, best first, at most 3: names equal to `name`
/// ignoring case come first, then the others within a Levenshtein distance (ignoring case) of
/// a third of `name`'s length (at least 2), nearest first, ties by name.
pub fn suggest(name: &str, candidates: &[String]) -> Vec<String> {
    let lower = name.to_lowercase();
    let limit = (lower.chars().count() / 3).max(2);
    let mut ranked: Vec<(usize, &String)> = candidates
        .iter()
        .map(|c| (strsim::levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(distance, _)| *distance <= limit)
        .collect();
    ranked.sort();
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().take(3).map(|(_, c)| c.clone()).collect()
}
