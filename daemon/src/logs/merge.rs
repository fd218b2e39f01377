//! Merging several processes' lines into one list in capture order, without ever reordering
//! one process's own lines. Used by `logs` (control) and `follow`.
//!
//! Why not a sort on the capture time: lines carry the wall clock, and when it is set back
//! (`date -s`, an NTP step) a process's newer lines get earlier times. A sort then put them
//! before older ones, and `logs -n N`, which keeps the last N of the merge, left out the
//! newest lines. Here each process's lines stay in sequence order and only the interleaving
//! between processes follows the times (issue 17, clock faults).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Merges `runs` (each in its own order) by the `time` of each run's next item, ties by run
/// index: a k-way merge, so every run's items keep their order whatever their times.
pub fn by_time<T>(runs: Vec<Vec<T>>, time: impl Fn(&T) -> u64) -> Vec<T> {
    let mut runs: Vec<Vec<T>> = runs.into_iter().filter(|r| !r.is_empty()).collect();
    if runs.len() <= 1 {
        return runs.pop().unwrap_or_default();
    }
    let total = runs.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(total);
    let mut iters: Vec<std::iter::Peekable<std::vec::IntoIter<T>>> =
        runs.into_iter().map(|r| r.into_iter().peekable()).collect();
    let mut heap = BinaryHeap::with_capacity(iters.len());
    for (i, it) in iters.iter_mut().enumerate() {
        if let Some(x) = it.peek() {
            heap.push(Reverse((time(x), i)));
        }
    }
    while let Some(Reverse((_, i))) = heap.pop() {
        let it = &mut iters[i];
        if let Some(x) = it.next() {
            out.push(x);
        }
        if let Some(x) = it.peek() {
            heap.push(Reverse((time(x), i)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::by_time;

    #[test]
    fn interleaves_runs_by_time() {
        let m = by_time(
            vec![vec![(1, 'a'), (4, 'a')], vec![(2, 'b'), (3, 'b')]],
            |x| x.0,
        );
        assert_eq!(m, vec![(1, 'a'), (2, 'b'), (3, 'b'), (4, 'a')]);
    }

    #[test]
    fn a_run_whose_clock_went_back_keeps_its_order() {
        // Process a's clock was set back by 100 between its second and third line.
        let a = vec![(200, 0), (201, 1), (101, 2), (102, 3)];
        let m = by_time(vec![a.clone()], |x| x.0);
        assert_eq!(m, a);
        let m = by_time(vec![a, vec![(150, 9)]], |x| x.0);
        let seqs: Vec<i32> = m.iter().filter(|x| x.1 != 9).map(|x| x.1).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3], "{m:?}");
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn ties_go_to_the_earlier_run() {
        let m = by_time(vec![vec![(5, 'a')], vec![(5, 'b')], vec![]], |x| x.0);
        assert_eq!(m, vec![(5, 'a'), (5, 'b')]);
    }
}
