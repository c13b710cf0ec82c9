//! `cnn-lstm summary [MODEL]`: a Keras-style summary of a model file or of
//! the demo's model.

use cnn_lstm::summary::summary;

use super::run_device;
use super::{demo, say, CliResult, SummaryArgs};

/// Prints the summary table.
pub fn run(args: &SummaryArgs) -> CliResult {
    let model = match &args.model {
        Some(path) => run_device::model_from_file(path)?.model,
        None => demo::article_model()?,
    };
    say!("{}", summary(&model).trim_end());
    Ok(())
}
