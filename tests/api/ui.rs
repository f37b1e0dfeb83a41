//! The account page at `/ui/`: its files are served with their types, a strict
//! Content-Security-Policy and the other security headers; the HTML holds no inline script,
//! style or event handler (the policy would block them); `--ui false` removes the routes.

use crate::helpers::*;

use sessiond::faces::ui::CONTENT_SECURITY_POLICY;
use sessiond::ops::openapi::PAGE_ROUTES;

const FILES: [(&str, &str); 4] = [
    ("/ui/", "text/html; charset=utf-8"),
    ("/ui/app.js", "text/javascript; charset=utf-8"),
    ("/ui/sessions.js", "text/javascript; charset=utf-8"),
    ("/ui/app.css", "text/css; charset=utf-8"),
];

#[track_caller]
fn assert_security_headers(answer: &Answer, what: &str) {
    assert_eq!(
        answer.header("content-security-policy"),
        Some(CONTENT_SECURITY_POLICY),
        "{what}"
    );
    assert_eq!(
        answer.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        answer.header("referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
}

#[test]
fn the_policy_allows_only_this_origin_and_nothing_inline() {
    let directives: Vec<&str> = CONTENT_SECURITY_POLICY.split("; ").collect();
    for wanted in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            directives.contains(&wanted),
            "{wanted} in {CONTENT_SECURITY_POLICY}"
        );
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
}

#[tokio::test]
async fn the_page_and_its_files_are_served_with_types_and_security_headers() {
    let app = spawn_app().await;
    for (path, content_type) in FILES {
        let answer = get_path(&app, path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert_eq!(answer.header("content-type"), Some(content_type), "{path}");
        assert_eq!(answer.header("cache-control"), Some("no-cache"), "{path}");
        assert_security_headers(&answer, path);
        assert!(!answer.body.is_empty(), "{path}");
        // A client's current copy is revalidated, not sent again.
        let etag = answer.header("etag").expect("etag").to_owned();
        let again = send(app.http.get(app.url(path)).header("if-none-match", &etag)).await;
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty(), "{path}");
        assert_security_headers(&again, path);
    }
    let html = get_path(&app, "/ui/").await.body;
    assert!(html.contains(r#"<script type="module" src="app.js"></script>"#));
    assert!(html.contains(r#"<link rel="stylesheet" href="app.css">"#));
}

#[tokio::test]
async fn ui_without_a_slash_redirects_to_the_page() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let answer = send(client.get(app.url("/ui"))).await;
    assert_eq!(answer.status, 308);
    assert_eq!(answer.header("location"), Some("/ui/"));
    assert_security_headers(&answer, "/ui");
}

/// Every `<tag …>` of an HTML text, lower-cased.
fn tags(html: &str) -> Vec<String> {
    html.split('<')
        .skip(1)
        .filter_map(|rest| {
            rest.split_once('>')
                .map(|(tag, _)| tag.to_ascii_lowercase())
        })
        .collect()
}

#[tokio::test]
async fn the_html_has_no_inline_script_style_or_handler() {
    let app = spawn_app().await;
    let html = get_path(&app, "/ui/").await.body;
    let tags = tags(&html);
    assert!(tags.len() > 20, "{} tags", tags.len());
    let scripts: Vec<&String> = tags.iter().filter(|t| t.starts_with("script")).collect();
    assert_eq!(scripts.len(), 1, "{scripts:?}");
    for script in scripts {
        assert!(script.contains(" src="), "inline script: <{script}>");
    }
    // Whatever a script element encloses must be nothing.
    for chunk in html.split("<script").skip(1) {
        let body = chunk
            .split_once('>')
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map(|(body, _)| body)
            .expect("a closed script element");
        assert!(body.trim().is_empty(), "inline script body: {body:?}");
    }
    assert!(
        !tags.iter().any(|t| t.starts_with("style")),
        "a <style> element"
    );
    for tag in &tags {
        let attributes: Vec<&str> = tag.split_whitespace().skip(1).collect();
        for attribute in attributes {
            let name = attribute.split('=').next().unwrap_or_default();
            assert!(name != "style", "inline style: <{tag}>");
            assert!(
                !(name.starts_with("on") && attribute.contains('=')),
                "inline handler: <{tag}>"
            );
        }
        assert!(!tag.contains("javascript:"), "javascript: URL in <{tag}>");
    }
    // The form fields have labels.
    for id in ["login", "password", "admin-token", "admin-user"] {
        assert!(
            html.contains(&format!(r#"<label for="{id}">"#)),
            "label for {id}"
        );
    }
}

#[tokio::test]
async fn with_the_page_turned_off_its_routes_are_unknown() {
    let app = spawn_app_with(|s| s.ui = false).await;
    for (_, path) in PAGE_ROUTES {
        let answer = get_path(&app, path).await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.body);
        assert_eq!(answer.header("content-security-policy"), None, "{path}");
    }
    // The API it uses is still there.
    assert_eq!(
        get_path(&app, "/auth/self-service/login/api").await.status,
        200
    );
}

#[tokio::test]
async fn page_requests_are_labelled_as_the_ui_in_metrics() {
    let app = spawn_app().await;
    assert_eq!(get_path(&app, "/ui/app.js").await.status, 200);
    let metrics = get_path(&app, "/metrics").await.body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sessiond_requests_total{")
                && l.contains(r#"face="ui""#)
                && l.contains(r#"method="GET /ui/app.js""#)),
        "{metrics}"
    );
}
