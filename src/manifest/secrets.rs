//! Secret references → values. Values are wrapped in [`SecretString`], which never prints.

use secrecy::SecretString;

use super::model::SecretRef;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SecretError {
    #[error("secret reference `env:{0}`: environment variable `{0}` is not set")]
    #[diagnostic(
        code(reimage::secret::env),
        help(
            "export {0}=… before running, or point the reference at a file with `{{file: PATH}}`"
        )
    )]
    EnvMissing(String),
    #[error("secret reference `env:{0}`: environment variable `{0}` is empty")]
    #[diagnostic(code(reimage::secret::env))]
    EnvEmpty(String),
    #[error("secret reference `file:{path}`: cannot read the file: {message}")]
    #[diagnostic(code(reimage::secret::file))]
    File { path: String, message: String },
    #[error("secret reference `file:{0}`: the file is empty")]
    #[diagnostic(code(reimage::secret::file))]
    FileEmpty(String),
}

/// Reads the value a reference points at. One trailing newline of a file is dropped.
pub fn resolve(reference: &SecretRef) -> Result<SecretString, SecretError> {
    match reference {
        SecretRef::Env(name) => match std::env::var(name) {
            Ok(value) if value.is_empty() => Err(SecretError::EnvEmpty(name.clone())),
            Ok(value) => Ok(SecretString::from(value)),
            Err(_) => Err(SecretError::EnvMissing(name.clone())),
        },
        SecretRef::File(path) => {
            let mut text = crate::files::read_limited_to_string(
                std::path::Path::new(path),
                crate::files::SECRET_MAX_BYTES,
            )
            .map_err(|error| SecretError::File {
                path: path.clone(),
                message: error.reason(),
            })?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            if text.is_empty() {
                return Err(SecretError::FileEmpty(path.clone()));
            }
            Ok(SecretString::from(text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn file_reference_drops_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let value = resolve(&SecretRef::File(path.display().to_string())).unwrap();
        assert_eq!(value.expose_secret(), "s3cret");
    }

    #[test]
    fn missing_env_names_the_variable() {
        let error = resolve(&SecretRef::Env("REIMAGE_TEST_SURELY_UNSET_42".into())).unwrap_err();
        assert!(error.to_string().contains("REIMAGE_TEST_SURELY_UNSET_42"));
    }

    #[test]
    fn secret_value_never_prints() {
        let value = SecretString::from("hunter2".to_string());
        assert!(!format!("{value:?}").contains("hunter2"));
    }
}
