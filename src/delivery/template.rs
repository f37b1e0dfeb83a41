//! The templates of OTP emails and links: text with `{{.Name}}` placeholders (the subset of
//! Go template syntax ZITADEL's login sends), filled from a fixed list of names. An unknown
//! name or an unclosed `{{` is an error, so a mistyped template fails when it is used, not
//! by sending a broken link.

/// `template` with each `{{.Name}}` (spaces inside the braces allowed) replaced by the value
/// of `Name` in `values`.
pub fn render_template(template: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a '{{' is not closed by '}}'".to_owned())?;
        let name = after[..end].trim();
        let name = name
            .strip_prefix('.')
            .ok_or_else(|| format!("'{{{{{name}}}}}' is not a field such as {{{{.Code}}}}"))?;
        let value = values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let known: Vec<String> = values.iter().map(|(n, _)| format!(".{n}")).collect();
                format!("unknown field .{name}; known: {}", known.join(", "))
            })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_filled_and_unknown_ones_refused() {
        let values = [("Code", "12345678"), ("UserID", "u1")];
        assert_eq!(
            render_template("https://x/otp?code={{.Code}}&u={{ .UserID }}", &values).as_deref(),
            Ok("https://x/otp?code=12345678&u=u1")
        );
        assert_eq!(render_template("plain", &values).as_deref(), Ok("plain"));
        assert!(render_template("{{.Nope}}", &values).is_err());
        assert!(render_template("{{.Code", &values).is_err());
        assert!(render_template("{{Code}}", &values).is_err());
        assert!(render_template("{{}}", &values).is_err());
    }
}
