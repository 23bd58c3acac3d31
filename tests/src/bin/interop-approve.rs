//! Approves a pending device login at the interop provider (`interop/provider.mjs`)
//! the way a person would, through oidc-provider's own pages with form posts: the
//! code confirmation, the sign-in form and the consent page. Used by `scripts/demo`.
//!
//! Usage: interop-approve --login NAME --password PW VERIFICATION_URI_COMPLETE

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut login = None;
    let mut password = None;
    let mut uri = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--login" => login = it.next(),
            "--password" => password = it.next(),
            _ if uri.is_none() && !a.starts_with('-') => uri = Some(a),
            _ => {
                eprintln!("interop-approve: unexpected argument {a:?}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(login), Some(password), Some(uri)) = (login, password, uri) else {
        eprintln!("usage: interop-approve --login NAME --password PW VERIFICATION_URI_COMPLETE");
        return ExitCode::from(2);
    };
    match latchkey_tests::oidc_provider::approve_device(&uri, &login, &password) {
        Ok(pages) => {
            let pages: Vec<String> = pages.into_iter().filter(|p| !p.is_empty()).collect();
            println!("approved as {login}; pages: {}", pages.join(" → "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("interop-approve: {e}");
            ExitCode::FAILURE
        }
    }
}
