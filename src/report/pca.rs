//! Principal component analysis of code vectors, in plain `f64`: mean-centre, the `d x d`
//! covariance, and its eigenvectors by the cyclic Jacobi method (exact to rounding for the
//! small `d` of our codes, at most 128, and indifferent to equal eigenvalues, where power
//! iteration would stall). No GPU: this is a picture's arithmetic.
use crate::{Error, Result};

/// The first two principal axes of a set of vectors.
#[derive(Clone, Debug)]
pub struct Pca {
    /// The mean vector that projections subtract.
    pub mean: Vec<f64>,
    /// Unit axes, largest variance first. Signs are fixed: each axis's component of largest
    /// magnitude is positive, so the same data give the same picture. With `d = 1` the
    /// second axis is all zeros.
    pub axes: [Vec<f64>; 2],
    /// The variance along each axis (the covariance's two largest eigenvalues).
    pub variances: [f64; 2],
    /// The total variance (the covariance's trace).
    pub total: f64,
    /// Rows fitted (rows holding a non-finite value are left out).
    pub rows: usize,
}

impl Pca {
    /// Fits the rows of `data` (`dim` values each) that hold only finite values. Refused when
    /// `dim` is 0, `data` is not whole rows, or no row is finite.
    pub fn fit(data: &[f32], dim: usize) -> Result<Pca> {
        let (mean, cov, rows) = covariance(data, dim)?;
        let total = (0..dim).map(|i| cov[i * dim + i]).sum();
        let (values, vectors) = match dim <= JACOBI_MAX {
            true => symmetric_eigen(cov, dim),
            false => leading_eigen(&cov, dim),
        };
        // Eigenvector k is column k of `vectors`, one column per value.
        let cols = values.len();
        let mut order: Vec<usize> = (0..cols).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        let axis = |k: Option<&usize>| match k {
            Some(&k) => oriented((0..dim).map(|r| vectors[r * cols + k]).collect()),
            None => vec![0.0; dim],
        };
        let variance = |k: Option<&usize>| k.map_or(0.0, |&k| values[k].max(0.0));
        Ok(Pca {
            mean,
            axes: [axis(order.first()), axis(order.get(1))],
            variances: [variance(order.first()), variance(order.get(1))],
            total,
            rows,
        })
    }

    /// The coordinates of `v` (one row of `dim` values) on the two axes.
    pub fn project(&self, v: &[f32]) -> [f64; 2] {
        let along = |axis: &[f64]| {
            v.iter()
                .zip(&self.mean)
                .zip(axis)
                .map(|((&x, m), a)| (x as f64 - m) * a)
                .sum()
        };
        [along(&self.axes[0]), along(&self.axes[1])]
    }

    /// The fraction of the total variance along each axis (0 when the data do not vary).
    pub fn explained(&self) -> [f64; 2] {
        self.variances.map(|v| {
            if self.total > 0.0 {
                (v / self.total).clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
    }
}

/// The mean, the covariance (row-major `dim x dim`, divided by `rows - 1`, or 1 for a single
/// row) and the number of rows, over the rows of `data` whose values are all finite.
pub fn covariance(data: &[f32], dim: usize) -> Result<(Vec<f64>, Vec<f64>, usize)> {
    if dim == 0 || !data.len().is_multiple_of(dim) {
        return Err(Error::Shape {
            op: "pca",
            detail: format!("{} values are not whole rows of {dim}", data.len()),
        });
    }
    let finite = || data.chunks(dim).filter(|r| r.iter().all(|v| v.is_finite()));
    let rows = finite().count();
    if rows == 0 {
        return Err(Error::Shape {
            op: "pca",
            detail: format!(
                "no row of {dim} finite values among {} rows",
                data.len() / dim
            ),
        });
    }
    let mut mean = vec![0.0f64; dim];
    for r in finite() {
        for (m, &x) in mean.iter_mut().zip(r) {
            *m += x as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows as f64);
    let mut cov = vec![0.0f64; dim * dim];
    let mut centred = vec![0.0f64; dim];
    for r in finite() {
        for ((c, &x), m) in centred.iter_mut().zip(r).zip(&mean) {
            *c = x as f64 - m;
        }
        for i in 0..dim {
            let ci = centred[i];
            let line = &mut cov[i * dim..(i + 1) * dim];
            for (v, cj) in line[i..].iter_mut().zip(&centred[i..]) {
                *v += ci * cj;
            }
        }
    }
    let n = (rows.max(2) - 1) as f64;
    for i in 0..dim {
        for j in i..dim {
            let v = cov[i * dim + j] / n;
            cov[i * dim + j] = v;
            cov[j * dim + i] = v;
        }
    }
    Ok((mean, cov, rows))
}

/// The widest code whose covariance gets every eigenpair by Jacobi (cubic in the width): the
/// built-ins' codes are 32 and 128 wide. Wider ones (the denoising model's 7x7x32 = 1568: Jacobi
/// took most of an hour there) get the leading ones by subspace iteration.
pub const JACOBI_MAX: usize = 128;

/// Vectors the subspace iteration carries: the two wanted and six more, so that the two
/// converge at the rate of the 9th eigenvalue's ratio to the 2nd, not the 3rd's.
const SUBSPACE: usize = 8;

/// The leading `SUBSPACE` eigenpairs of the symmetric `n x n` matrix `a` (row-major) by
/// subspace iteration with a Rayleigh-Ritz step each round (`(values, vectors)` as
/// [`symmetric_eigen`] gives them, `n x k` vectors in columns, unsorted). Stops when the two
/// largest Ritz values move by at most 1e-12 of the largest, or after 1000 rounds; each round
/// costs `k n^2` multiply-adds (20 M for n = 1568). Deterministic: the start is fixed.
pub fn leading_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let k = SUBSPACE.min(n);
    // A fixed, well-spread start: column j of q is cos((i + 1)(j + 1)) over the rows i.
    let mut q: Vec<Vec<f64>> = (0..k)
        .map(|j| (0..n).map(|i| (((i + 1) * (j + 1)) as f64).cos()).collect())
        .collect();
    orthonormalise(&mut q);
    let mut last = [f64::NAN; 2];
    let mut ritz = (vec![0.0; k], vec![0.0; k * k]);
    let mut z = q.clone();
    for _round in 0..1000 {
        // z = A q, column by column over A's contiguous rows.
        for (zj, qj) in z.iter_mut().zip(&q) {
            for (i, zi) in zj.iter_mut().enumerate() {
                *zi = dot(&a[i * n..(i + 1) * n], qj);
            }
        }
        // T = q^T A q (k x k) and its eigenpairs: the Ritz values.
        let t: Vec<f64> = (0..k * k).map(|e| dot(&q[e / k], &z[e % k])).collect();
        ritz = symmetric_eigen(t, k);
        let mut top = ritz.0.clone();
        top.sort_by(|x, y| y.total_cmp(x));
        let moved = (top[0] - last[0])
            .abs()
            .max((top[1.min(k - 1)] - last[1]).abs());
        if moved <= 1e-12 * top[0].abs().max(f64::MIN_POSITIVE) {
            break;
        }
        last = [top[0], top[1.min(k - 1)]];
        std::mem::swap(&mut q, &mut z);
        orthonormalise(&mut q);
    }
    // The Ritz vectors q W, as n x k columns.
    let (values, w) = ritz;
    let mut vectors = vec![0.0; n * k];
    for r in 0..n {
        for c in 0..k {
            vectors[r * k + c] = (0..k).map(|m| q[m][r] * w[m * k + c]).sum();
        }
    }
    (values, vectors)
}

fn dot(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// Modified Gram-Schmidt on the columns, in place; a column that vanishes stays zero.
fn orthonormalise(q: &mut [Vec<f64>]) {
    for j in 0..q.len() {
        let (done, rest) = q.split_at_mut(j);
        let v = &mut rest[0];
        for b in done.iter() {
            let d = dot(v, b);
            v.iter_mut().zip(b).for_each(|(x, y)| *x -= d * y);
        }
        let len = dot(v, v).sqrt();
        if len > 0.0 {
            v.iter_mut().for_each(|x| *x /= len);
        }
    }
}

/// The eigenvalues and eigenvectors of the symmetric `n x n` matrix `a` (row-major) by cyclic
/// Jacobi rotations: `(values, vectors)`, eigenvector `k` in column `k` of `vectors`
/// (row-major), unsorted.
pub fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let norm: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..64 {
        let off: f64 = (0..n)
            .flat_map(|p| (p + 1..n).map(move |q| (p, q)))
            .map(|(p, q)| a[p * n + q] * a[p * n + q])
            .sum();
        if off <= norm * 1e-30 || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                rotate(&mut a, &mut v, n, p, q);
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// One Jacobi rotation in the (`p`, `q`) plane that zeroes `a[p][q]`, accumulated into `v`.
fn rotate(a: &mut [f64], v: &mut [f64], n: usize, p: usize, q: usize) {
    let apq = a[p * n + q];
    if apq == 0.0 {
        return;
    }
    let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
    let t = if theta.abs() > 1e150 {
        0.5 / theta
    } else {
        theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
    };
    let c = 1.0 / (t * t + 1.0).sqrt();
    let s = t * c;
    // A J: columns p and q.
    for k in 0..n {
        let (kp, kq) = (a[k * n + p], a[k * n + q]);
        a[k * n + p] = c * kp - s * kq;
        a[k * n + q] = s * kp + c * kq;
    }
    // J^T (A J): rows p and q.
    for k in 0..n {
        let (pk, qk) = (a[p * n + k], a[q * n + k]);
        a[p * n + k] = c * pk - s * qk;
        a[q * n + k] = s * pk + c * qk;
    }
    a[p * n + q] = 0.0;
    a[q * n + p] = 0.0;
    for k in 0..n {
        let (kp, kq) = (v[k * n + p], v[k * n + q]);
        v[k * n + p] = c * kp - s * kq;
        v[k * n + q] = s * kp + c * kq;
    }
}

/// `axis` with the sign that makes its largest-magnitude component positive.
fn oriented(mut axis: Vec<f64>) -> Vec<f64> {
    let big = axis
        .iter()
        .copied()
        .fold(0.0f64, |b, x| if x.abs() > b.abs() { x } else { b });
    if big < 0.0 {
        axis.iter_mut().for_each(|x| *x = -*x);
    }
    axis
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// An orthonormal basis of R^d from Gram-Schmidt on seeded random vectors.
    fn basis(d: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<Vec<f64>> {
        let mut out: Vec<Vec<f64>> = Vec::new();
        while out.len() < d {
            let mut v: Vec<f64> = (0..d).map(|_| rng.random::<f64>() - 0.5).collect();
            for b in &out {
                let dot: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
                v.iter_mut().zip(b).for_each(|(x, y)| *x -= dot * y);
            }
            let len = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            if len > 1e-3 {
                out.push(v.into_iter().map(|x| x / len).collect());
            }
        }
        out
    }

    /// Past JACOBI_MAX the two leading eigenpairs come from subspace iteration: they agree with
    /// Jacobi's (which still runs here, on a 200-wide matrix) in value and, up to sign, in
    /// vector; and `fit` takes that path for wide codes.
    #[test]
    fn subspace_iteration_agrees_with_jacobi_on_wide_matrices() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let n = JACOBI_MAX + 72;
        let b = basis(n, &mut rng);
        // Eigenvalues 9, 4, then a slow decay: a gap, as codes have, but not a wide one.
        let lambda: Vec<f64> = (0..n)
            .map(|k| [9.0, 4.0][k.min(1)] / (1 + k.saturating_sub(1)) as f64)
            .collect();
        let mut a = vec![0.0; n * n];
        for (l, v) in lambda.iter().zip(&b) {
            for i in 0..n {
                for j in 0..n {
                    a[i * n + j] += l * v[i] * v[j];
                }
            }
        }
        let (values, vectors) = leading_eigen(&a, n);
        let k = values.len();
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&x, &y| values[y].total_cmp(&values[x]));
        for (rank, &c) in order.iter().take(2).enumerate() {
            assert!(
                (values[c] - lambda[rank]).abs() < 1e-9,
                "value {rank}: {}",
                values[c]
            );
            let v: Vec<f64> = (0..n).map(|r| vectors[r * k + c]).collect();
            let cos: f64 = v.iter().zip(&b[rank]).map(|(x, y)| x * y).sum();
            assert!(
                (cos.abs() - 1.0).abs() < 1e-9,
                "vector {rank}: |cos| {}",
                cos.abs()
            );
        }
        let (jv, _) = symmetric_eigen(a, n);
        let mut jv = jv;
        jv.sort_by(|x, y| y.total_cmp(x));
        assert!((jv[0] - lambda[0]).abs() < 1e-9 && (jv[1] - lambda[1]).abs() < 1e-9);
    }

    /// Points `mean + sum_k s_k z_k b_k` with standard deviations 5, 2, 0.5, 0.1, ... along
    /// a random orthonormal basis `b`: the first two principal axes are `b_0` and `b_1`.
    #[test]
    fn finds_known_principal_axes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for d in [2usize, 5, 32, 128, 160] {
            let b = basis(d, &mut rng);
            let sd: Vec<f64> = (0..d)
                .map(|k| [5.0, 2.0, 0.5][k.min(2)] / (1 + k.saturating_sub(2)) as f64)
                .collect();
            let mean: Vec<f64> = (0..d).map(|i| i as f64 * 0.1 - 1.0).collect();
            let n = 4000;
            let mut data = Vec::with_capacity(n * d);
            for _ in 0..n {
                // Uniform in [-sqrt(3), sqrt(3)]: unit variance.
                let z: Vec<f64> = (0..d)
                    .map(|_| (rng.random::<f64>() * 2.0 - 1.0) * 3f64.sqrt())
                    .collect();
                for i in 0..d {
                    let x: f64 = mean[i] + (0..d).map(|k| sd[k] * z[k] * b[k][i]).sum::<f64>();
                    data.push(x as f32);
                }
            }
            let p = Pca::fit(&data, d).unwrap();
            assert_eq!(p.rows, n);
            for k in 0..2 {
                let dot: f64 = p.axes[k].iter().zip(&b[k]).map(|(x, y)| x * y).sum();
                assert!(dot.abs() > 0.995, "d {d}, axis {k}: |cos| {}", dot.abs());
                let len: f64 = p.axes[k].iter().map(|x| x * x).sum();
                assert!((len - 1.0).abs() < 1e-9, "d {d}, axis {k} not unit: {len}");
                let want = sd[k] * sd[k];
                assert!(
                    (p.variances[k] - want).abs() < 0.1 * want,
                    "d {d}, axis {k}: variance {} vs {want}",
                    p.variances[k]
                );
            }
            let total: f64 = sd.iter().map(|s| s * s).sum();
            let e = p.explained();
            assert!((e[0] - 25.0 / total).abs() < 0.03, "d {d}: {e:?}");
            for (m, want) in p.mean.iter().zip(&mean) {
                assert!((m - want).abs() < 0.3, "d {d}: mean {m} vs {want}");
            }
        }
    }

    #[test]
    fn jacobi_diagonalises() {
        let n = 6;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let m: Vec<f64> = (0..n * n).map(|_| rng.random::<f64>() - 0.5).collect();
        // A = M^T M: symmetric, positive semi-definite.
        let a: Vec<f64> = (0..n * n)
            .map(|ij| (0..n).map(|k| m[k * n + ij / n] * m[k * n + ij % n]).sum())
            .collect();
        let (values, v) = symmetric_eigen(a.clone(), n);
        for k in 0..n {
            for i in 0..n {
                let av: f64 = (0..n).map(|j| a[i * n + j] * v[j * n + k]).sum();
                assert!((av - values[k] * v[i * n + k]).abs() < 1e-10, "A v != l v");
            }
        }
    }

    #[test]
    fn projects_onto_the_axes_and_handles_edge_cases() {
        // Points on a line through (1, 1) along (3, 4)/5: all the variance on PC 1.
        let data: Vec<f32> = (0..5)
            .flat_map(|t| [1.0 + 3.0 * t as f32, 1.0 + 4.0 * t as f32])
            .collect();
        let p = Pca::fit(&data, 2).unwrap();
        assert!((p.axes[0][0] - 0.6).abs() < 1e-12 && (p.axes[0][1] - 0.8).abs() < 1e-12);
        let e = p.explained();
        assert!((e[0] - 1.0).abs() < 1e-12 && e[1].abs() < 1e-12, "{e:?}");
        let [x, y] = p.project(&[1.0 + 3.0 * 4.0, 1.0 + 4.0 * 4.0]);
        assert!((x - 10.0).abs() < 1e-9 && y.abs() < 1e-9, "{x} {y}");
        // One dimension, constant data, a non-finite row, no rows.
        let one = Pca::fit(&[1.0, 2.0, 3.0], 1).unwrap();
        assert_eq!(one.axes[1], vec![0.0]);
        let flat = Pca::fit(&[2.0; 12], 3).unwrap();
        assert_eq!(flat.explained(), [0.0, 0.0]);
        let some_nan = Pca::fit(&[0.0, 1.0, f32::NAN, 2.0, 4.0, 2.0], 2).unwrap();
        assert_eq!(some_nan.rows, 2);
        assert!(Pca::fit(&[], 2).is_err());
        assert!(Pca::fit(&[1.0, 2.0, 3.0], 2).is_err());
        assert!(Pca::fit(&[1.0, 2.0], 0).is_err());
        assert!(Pca::fit(&[f32::INFINITY, 1.0], 2).is_err());
    }
}
