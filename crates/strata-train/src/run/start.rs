//! Before fitting: the run folder claimed for a new run, or the checkpoint
//! and metrics of an interrupted one restored.

use super::folder::{
    claim_out_folder, io_err, remove_stray_temporaries, restore_checkpoint, write_text,
};
use super::plan::Plan;
use super::report::{restore_metrics, Metrics};
use super::{agree, RunError, RunOptions};
use crate::fit::Observer;

/// Where fitting starts.
pub(super) struct Start {
    /// Epochs already trained (0 for a new run).
    pub(super) first_epoch: usize,
    /// Their metrics, read back from `metrics.jsonl` when resuming.
    pub(super) metrics: Metrics,
}

/// Claims `opts.out` (rank 0 only; every rank of a group learns whether it
/// could), restores the checkpoint on `--resume`, and writes `spec.toml`.
pub(super) fn prepare(
    plan: &mut Plan,
    opts: &RunOptions,
    lead: bool,
    progress: &mut dyn Observer,
) -> Result<Start, RunError> {
    let claimed = if lead {
        std::fs::create_dir_all(&opts.out)
            .map_err(|e| io_err(&opts.out, e))
            .and_then(|()| {
                remove_stray_temporaries(&opts.out);
                if opts.resume {
                    Ok(())
                } else {
                    claim_out_folder(&opts.out, opts.overwrite)
                }
            })
    } else {
        Ok(())
    };
    agree(opts.group.as_ref(), claimed, "prepare the output folder")?;
    let first_epoch = if opts.resume {
        // Under a group every rank decodes the same bytes, so every rank
        // fails alike.
        let e = restore_checkpoint(
            &opts.out,
            &mut plan.model,
            &mut plan.optimizer,
            opts.group.as_ref(),
        )
        .map_err(|e| match opts.group {
            Some(_) => RunError::EveryRank(Box::new(e)),
            None => e,
        })?;
        progress.on_message(&format!(
            "resuming after epoch {e} from {}",
            opts.out.join("checkpoint").display()
        ));
        e
    } else {
        0
    };
    if plan.spec.train.precision() == Ok(strata_kernels::gemm::MatmulPrecision::Bf16) {
        progress.on_message(if strata_kernels::gemm::bf16_available() {
            "train.matmul_precision = \"bf16\": fully connected layers multiply on AMX tiles, operands rounded to bfloat16"
        } else {
            "train.matmul_precision = \"bf16\": this CPU has no AMX-BF16 tiles (or the OS does not grant them), so the products run in f32"
        });
    }
    if lead {
        write_text(&opts.out.join("spec.toml"), &plan.spec.source)?;
    }
    let metrics = if opts.resume && lead {
        restore_metrics(&opts.out, first_epoch)
    } else {
        Metrics {
            jsonl: String::new(),
            step_losses: Vec::new(),
            epochs: Vec::new(),
            train_seconds: 0.0,
        }
    };
    Ok(Start {
        first_epoch,
        metrics,
    })
}
