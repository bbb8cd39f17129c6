"""What more than one benchmark uses: the repository's paths, result and docs writing, /proc
readings, the prepared model. Imports nothing itself: import the module you need."""
