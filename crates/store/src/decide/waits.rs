//! Waits: when a suspended workflow's wait is over.

use crate::Wait;

/// How many finished children a workflow committing `wait` still waits for, given that
/// `unfinished` of the children it names have not finished yet: a join of all waits for every
/// unfinished one; a join of any is over (0) as soon as one of them has finished, else waits for
/// one. 0 means the wait is already over and the step is claimable at once. (Waits other than
/// for children count 0 here; they end by time or event.)
pub fn pending_children(wait: &Wait, unfinished: i64) -> i64 {
    match wait {
        Wait::Children(_) => unfinished,
        Wait::AnyChild(ids) if unfinished > 0 => {
            if unfinished < ids.len() as i64 {
                0
            } else {
                1
            }
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_all_waits_for_every_unfinished_child_and_join_any_for_one() {
        let ids = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        assert_eq!(pending_children(&Wait::Children(ids.clone()), 2), 2);
        assert_eq!(pending_children(&Wait::Children(ids.clone()), 0), 0);
        assert_eq!(pending_children(&Wait::AnyChild(ids.clone()), 3), 1);
        assert_eq!(pending_children(&Wait::AnyChild(ids.clone()), 2), 0);
        assert_eq!(pending_children(&Wait::AnyChild(ids), 0), 0);
        assert_eq!(pending_children(&Wait::Timer(5), 0), 0);
    }
}
