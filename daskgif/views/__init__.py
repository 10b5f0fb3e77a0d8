"""What users look at: pictures of the pipeline and of a run, the progress line, the runs page."""
