//! The order stream every backend gets: 1-4 distinct skus per order (qty 1 each), sku choice
//! Zipf(s) over the catalogue, then a commit, a release or nothing.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

/// Units every catalogue sku starts with: ample, never runs out in a run.
pub const AMPLE_STOCK: u64 = 1_000_000_000_000;
/// The flash-sale sku; it is not part of the catalogue and starts unknown.
pub const HOT_SKU: &str = "HOT";
pub const WAREHOUSE: &str = "kol";

/// Sku names S1..Sn, built once so clients borrow them.
pub struct Catalogue {
    pub names: Vec<String>,
}

impl Catalogue {
    pub fn new(n: usize) -> Catalogue {
        Catalogue {
            names: (1..=n).map(|i| format!("S{i}")).collect(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Follow {
    Keep,
    Commit,
    Release,
}

pub struct Order<'a> {
    pub skus: Vec<&'a str>,
    pub hot: bool,
    pub follow: Follow,
}

pub struct Generator<'a> {
    cat: &'a Catalogue,
    zipf: Zipf<f64>,
    rng: SmallRng,
    commit_share: f64,
    release_share: f64,
    picked: Vec<usize>,
}

impl<'a> Generator<'a> {
    pub fn new(
        cat: &'a Catalogue,
        s: f64,
        seed: u64,
        commit_share: f64,
        release_share: f64,
    ) -> anyhow::Result<Generator<'a>> {
        let zipf = Zipf::new(cat.names.len() as f64, s)
            .map_err(|e| anyhow::anyhow!("zipf({}, {s}): {e}", cat.names.len()))?;
        Ok(Generator {
            cat,
            zipf,
            rng: SmallRng::seed_from_u64(seed),
            commit_share,
            release_share,
            picked: Vec::with_capacity(4),
        })
    }

    /// One order; with `flash`, half of all orders carry the hot sku as their first line.
    /// Hot orders are never released, so the hot sku's availability only falls and a
    /// refusal can be judged honest from the final state (see `main::check`).
    pub fn next(&mut self, flash: bool) -> Order<'a> {
        let hot = flash && self.rng.random_bool(0.5);
        let n = self.rng.random_range(1..=4usize);
        let zipf_lines = if hot { n - 1 } else { n };
        self.picked.clear();
        let mut skus = Vec::with_capacity(n);
        if hot {
            skus.push(HOT_SKU);
        }
        // Distinct lines: redraw a repeated sku a few times, else the order is shorter.
        for _ in 0..zipf_lines {
            for _ in 0..8 {
                let k =
                    (self.zipf.sample(&mut self.rng) as usize).clamp(1, self.cat.names.len()) - 1;
                if !self.picked.contains(&k) {
                    self.picked.push(k);
                    skus.push(self.cat.names[k].as_str());
                    break;
                }
            }
        }
        let u: f64 = self.rng.random();
        let follow = if u < self.commit_share {
            Follow::Commit
        } else if u < self.commit_share + self.release_share && !hot {
            Follow::Release
        } else {
            Follow::Keep
        };
        Order { skus, hot, follow }
    }
}
