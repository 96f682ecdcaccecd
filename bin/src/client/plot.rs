//! `echo-client plot`: percentile plots of .hgrm files.

#[derive(Debug, clap::Args)]
pub(crate) struct PlotArgs {
    /// The .hgrm files; each line is labelled with its file name
    #[arg(required = true, value_name = "FILE.hgrm")]
    pub(crate) files: Vec<std::path::PathBuf>,

    /// Where to write the SVG
    #[arg(env = "ECHO_PLOT_OUT", short, long, value_name = "FILE.svg")]
    pub(crate) out: std::path::PathBuf,

    /// The plot's title
    #[arg(
        env = "ECHO_PLOT_TITLE",
        long,
        value_name = "TEXT",
        default_value = "round-trip latency"
    )]
    pub(crate) title: String,
}

/// Reads the .hgrm files and writes their plot.
pub(super) fn run(args: &PlotArgs) -> std::process::ExitCode {
    super::exit_code(draw(args))
}

/// Draws the plot; what went wrong, in words.
fn draw(args: &PlotArgs) -> Result<(), String> {
    let mut series = Vec::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let label = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        series.push(crate::plot::from_hgrm(&label, &text).map_err(|e| e.to_string())?);
    }
    let title = format!("{} ({})", args.title, crate::plot::today());
    let svg = crate::plot::percentile_plot(&title, &series).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, svg).map_err(|e| format!("cannot write {}: {e}", args.out.display()))
}
