//! Adam and AdamW written over plain tensors, so that the optimiser state is
//! ours to checkpoint: a resumed run continues with exactly the moments it had.

use tch::Tensor;

use super::config::OptimizerKind;

/// Adam / AdamW over a fixed, ordered list of variables.
#[derive(Debug)]
pub struct Adam {
    kind: OptimizerKind,
    lr: f64,
    weight_decay: Vec<f64>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    step: i64,
    vars: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    /// An optimiser for `vars` (their order is the order of the state), with
    /// each variable's weight decay (missing entries: 0).
    pub fn new(vars: Vec<Tensor>, kind: OptimizerKind, lr: f64, mut weight_decay: Vec<f64>) -> Self {
        weight_decay.resize(vars.len(), 0.0);
        let m = vars.iter().map(|t| t.zeros_like()).collect();
        let v = vars.iter().map(|t| t.zeros_like()).collect();
        Adam { kind, lr, weight_decay, beta1: 0.9, beta2: 0.999, eps: 1e-8, step: 0, vars, m, v }
    }

    /// Clears the gradients.
    pub fn zero_grad(&mut self) {
        for v in &mut self.vars {
            let mut g = v.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// One update from the current gradients (variables without a gradient are skipped).
    pub fn step(&mut self) {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        tch::no_grad(|| {
            for (((var, m), v), &wd) in
                self.vars.iter_mut().zip(&mut self.m).zip(&mut self.v).zip(&self.weight_decay)
            {
                let g = var.grad();
                if !g.defined() {
                    continue;
                }
                let mut g = g.to_kind(var.kind());
                match self.kind {
                    OptimizerKind::Adamw if wd > 0.0 => {
                        let _ = var.g_mul_scalar_(1.0 - self.lr * wd);
                    }
                    _ if wd > 0.0 => g += &*var * wd,
                    _ => {}
                }
                // The same arithmetic as torch.optim.Adam's single-tensor path.
                let _ = m.lerp_(&g, 1.0 - self.beta1);
                let _ = v.g_mul_scalar_(self.beta2).addcmul_(&(&g * (1.0 - self.beta2)), &g);
                let mut denom = v.sqrt();
                let _ = denom.g_div_scalar_(bc2.sqrt()).g_add_scalar_(self.eps);
                let _ = var.addcdiv_(&(&*m * (-self.lr / bc1)), &denom);
            }
        });
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i64 {
        self.step
    }

    /// The state as named tensors (`m.<i>`, `v.<i>`) plus the step count.
    pub fn state(&self) -> (Vec<(String, Tensor)>, i64) {
        let mut out = Vec::new();
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            out.push((format!("m.{i}"), m.shallow_clone()));
            out.push((format!("v.{i}"), v.shallow_clone()));
        }
        (out, self.step)
    }

    /// Restores a state saved by [`Adam::state`]; false when it does not fit.
    pub fn load_state(&mut self, tensors: &std::collections::HashMap<String, Tensor>, step: i64) -> bool {
        for (i, (m, v)) in self.m.iter_mut().zip(&mut self.v).enumerate() {
            let (Some(sm), Some(sv)) = (tensors.get(&format!("m.{i}")), tensors.get(&format!("v.{i}")))
            else {
                return false;
            };
            if sm.size() != m.size() || sv.size() != v.size() {
                return false;
            }
            tch::no_grad(|| {
                m.copy_(sm);
                v.copy_(sv);
            });
        }
        self.step = step;
        true
    }
}
