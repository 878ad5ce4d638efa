"""What a run tells people: the report (`render`), SHAP attributions (`explain`), the email."""
