"""Keep a served model current: a challenger trained on new labelled data, promoted only when it is measurably better."""
