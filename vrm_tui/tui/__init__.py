"""The Textual app. The only package that imports textual; it shows what plain modules compute."""
