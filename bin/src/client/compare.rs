//! `echo-client compare BASE NEW`: two bench results side by side; exit 99
//! when NEW is worse than BASE beyond the tolerance, 2 when they cannot be
//! compared (or a file is not a bench result).

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use super::usage_error;
use crate::compare::{Judgement, Row, Tolerances};
use crate::model::Summary;
use crate::{EXIT_BREACHED, EXIT_FAILURE, complain, say, switch};

/// `echo-client compare`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct CompareArgs {
    /// The baseline: bench --json output or a bench --save file
    #[arg(value_name = "BASE.json")]
    pub(crate) base: PathBuf,

    /// The run to judge against it
    #[arg(value_name = "NEW.json")]
    pub(crate) new: PathBuf,

    /// The noise margin: a figure within it of BASE is "same" [default:
    /// 5%]; FIGURE=PCT sets one figure's (max=50%); repeatable
    #[arg(
        env = "ECHO_COMPARE_TOLERANCE",
        long = "tolerance",
        value_name = "PCT|FIGURE=PCT",
        value_delimiter = ','
    )]
    pub(crate) tolerances: Vec<String>,

    /// Print one JSON object instead of the table
    #[arg(value_parser = switch, env = "ECHO_COMPARE_JSON", long)]
    pub(crate) json: bool,
}

/// The comparison as JSON.
#[derive(Debug, Serialize)]
struct Comparison<'a> {
    schema_version: u32,
    base: String,
    new: String,
    rows: &'a [Row],
    worse: bool,
}

fn usage(message: impl std::fmt::Display) -> ! {
    usage_error(
        Some("compare"),
        clap::error::ErrorKind::ValueValidation,
        message,
    )
}

/// Reads one side: a bad file is a usage error, as a bad argument is.
fn load(path: &std::path::Path) -> Summary {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| usage(format!("cannot read {}: {e}", path.display())));
    crate::model::file::load_summary(&bytes)
        .unwrap_or_else(|e| usage(format!("{}: {e}", path.display())))
}

/// Runs `echo-client compare`.
pub(super) fn run(args: &CompareArgs) -> ExitCode {
    let mut tolerances = Tolerances::default();
    for spec in &args.tolerances {
        if let Err(e) = tolerances.add(spec) {
            usage(e);
        }
    }
    let (base, new) = (load(&args.base), load(&args.new));
    let rows = crate::compare::compare(&base, &new, &tolerances).unwrap_or_else(|e| usage(e));
    let worse = rows.iter().any(|r| r.verdict == Judgement::Worse);
    let printed = if args.json {
        let comparison = Comparison {
            schema_version: crate::model::SCHEMA_VERSION,
            base: args.base.display().to_string(),
            new: args.new.display().to_string(),
            rows: &rows,
            worse,
        };
        serde_json::to_string(&comparison).is_ok_and(say)
    } else {
        let mut text = crate::compare::notes(&base, &new).join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!(
            "BASE {}\nNEW  {}\n{}",
            args.base.display(),
            args.new.display(),
            crate::compare::table(&rows)
        ));
        say(text)
    };
    if !printed {
        complain("echo-client: cannot write to standard output");
        return ExitCode::from(EXIT_FAILURE);
    }
    if worse {
        let figures: Vec<String> = rows
            .iter()
            .filter(|r| r.verdict == Judgement::Worse)
            .map(|r| r.figure.name())
            .collect();
        complain(format!(
            "echo-client: NEW is worse than BASE beyond the tolerance: {}",
            figures.join(", ")
        ));
        return ExitCode::from(EXIT_BREACHED);
    }
    ExitCode::SUCCESS
}
