//! Batches of windows: sorted by length (longest first) so that a batch holds windows of
//! similar length, then cut so that each batch's real tokens stay within a budget.
//! This is the queue; the encoder never sees it.

/// Groups window indices into batches. `lens[i]` is window i's length in tokens.
/// Windows of equal length keep their input order, so the plan is deterministic.
pub fn plan_batches(lens: &[usize], budget_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by(|&a, &b| lens[b].cmp(&lens[a]).then(a.cmp(&b)));
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut tokens = 0;
    for i in order {
        if !current.is_empty() && tokens + lens[i] > budget_tokens {
            batches.push(std::mem::take(&mut current));
            tokens = 0;
        }
        current.push(i);
        tokens += lens[i];
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_first_within_budget() {
        let batches = plan_batches(&[3, 10, 4, 10, 2], 14);
        assert_eq!(batches, vec![vec![1], vec![3, 2], vec![0, 4]]);
    }

    #[test]
    fn a_window_over_budget_gets_its_own_batch() {
        assert_eq!(plan_batches(&[20, 1], 8), vec![vec![0], vec![1]]);
    }
}
