//! Output files created before a run.

/// An output file, created before the run so that a bad path fails at
/// once, and removed again unless it was written: no failed run leaves an
/// empty file behind.
#[derive(Debug)]
pub(crate) struct OutputFile {
    file: std::fs::File,
    path: std::path::PathBuf,
    written: bool,
}

impl OutputFile {
    /// Creates the file at `path`, if one was asked for.
    pub(crate) fn create(path: Option<&std::path::Path>) -> Result<Option<Self>, String> {
        let Some(path) = path else {
            return Ok(None);
        };
        let file = std::fs::File::create(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Some(Self {
            file,
            path: path.to_owned(),
            written: false,
        }))
    }

    /// Writes what `make` makes into the file, or says why it could not.
    pub(crate) fn fill(
        &mut self,
        make: impl FnOnce(&mut std::fs::File) -> Result<(), String>,
    ) -> Result<(), String> {
        make(&mut self.file).map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        self.written = true;
        Ok(())
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if !self.written {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
