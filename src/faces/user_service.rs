//! `zitadel.user.v2.UserService` at the protobuf level (a subset): creating a human user and
//! enrolling the second factors sessions can check (TOTP, one-time codes by email and SMS,
//! passkeys, recovery codes). Every other method of the service is declared, routed on every protocol
//! like the implemented ones, and answers UNIMPLEMENTED naming itself, so generated clients
//! match and fail clearly.
//!
//! A caller may change its own factors (its session token as bearer, or a JWT whose subject
//! is the user), or anyone's with `user.write` (`user.read` to list them). `AddHumanUser`
//! needs `user.write`. Of its fields, the login name (`username`, else the email), the
//! profile's names, the organization id and the password are used; a TOTP secret is imported
//! as verified. The email and phone are stored as the addresses one-time codes go to, verified
//! when the request says `isVerified` (this server sends no verification codes, so only such
//! addresses can enroll OTP email or SMS); a user id, a hashed password, metadata, IdP links
//! and an organization domain are refused with INVALID_ARGUMENT.

use super::SessionApi;
use super::convert::details;
use super::convert::invalid;
use super::pb::zitadel::object::v2 as object;
use super::pb::zitadel::user::v2 as msg;
use super::rpc::rpc_service;
use crate::core::{AuthMethod, ImportedSeed, NewContact, NewUser, PasskeyAttestation};
use crate::domain::{
    Error, ErrorKind, FactorKind, LoginName, Password, Principal, TotpCode, UserId, error_ids,
};
use crate::store::ContactKind;

fn unimplemented(method: &str) -> Error {
    Error::new(
        ErrorKind::Unimplemented,
        error_ids::METHOD_UNIMPLEMENTED,
        format!("zitadel.user.v2.UserService/{method} is not implemented by this server"),
    )
}

/// A text field of 1 to 200 characters without control characters.
fn text(value: String, field: &str) -> Result<String, Error> {
    let len = value.chars().count();
    if len == 0 || len > 200 || value.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{field}: 1 to 200 characters, no control characters"
        )));
    }
    Ok(value)
}

fn user_id(value: String) -> Result<UserId, Error> {
    UserId::parse(value)
}

fn method_type(method: AuthMethod) -> i32 {
    let t = match method {
        AuthMethod::Password => msg::AuthenticationMethodType::Password,
        AuthMethod::Passkey => msg::AuthenticationMethodType::Passkey,
        AuthMethod::Totp => msg::AuthenticationMethodType::Totp,
        AuthMethod::RecoveryCode => msg::AuthenticationMethodType::RecoveryCode,
        AuthMethod::OtpSms => msg::AuthenticationMethodType::OtpSms,
        AuthMethod::OtpEmail => msg::AuthenticationMethodType::OtpEmail,
    };
    t as i32
}

/// The user an AddHumanUser request describes, validated, with its contact addresses.
fn new_human(request: &mut msg::AddHumanUserRequest) -> Result<(NewUser, Vec<NewContact>), Error> {
    if request.user_id.is_some() {
        return Err(invalid(
            "userId: this server assigns user ids; leave it out",
        ));
    }
    if !request.metadata.is_empty() {
        return Err(invalid("metadata: not supported by this server"));
    }
    if !request.idp_links.is_empty() {
        return Err(invalid("idpLinks: not supported by this server"));
    }
    let profile = request
        .profile
        .take()
        .ok_or_else(|| invalid("profile: required"))?;
    let given = text(profile.given_name, "profile.givenName")?;
    let family = text(profile.family_name, "profile.familyName")?;
    let display_name = match profile.display_name {
        Some(name) => text(name, "profile.displayName")?,
        None => format!("{given} {family}"),
    };
    for (value, field) in [
        (profile.nick_name, "profile.nickName"),
        (profile.preferred_language, "profile.preferredLanguage"),
    ] {
        if let Some(value) = value {
            text(value, field)?;
        }
    }
    let email = request
        .email
        .take()
        .ok_or_else(|| invalid("email: required"))?;
    let email_verified = matches!(
        email.verification,
        Some(msg::set_human_email::Verification::IsVerified(true))
    );
    let email = text(email.email, "email.email")?;
    if !email.contains('@') || email.parse::<lettre::Address>().is_err() {
        return Err(invalid("email.email: not an email address"));
    }
    let mut contacts = vec![NewContact {
        kind: ContactKind::Email,
        address: email.clone(),
        verified: email_verified,
    }];
    if let Some(phone) = request.phone.take()
        && !phone.phone.is_empty()
    {
        let verified = matches!(
            phone.verification,
            Some(msg::set_human_phone::Verification::IsVerified(true))
        );
        let number = text(phone.phone, "phone.phone")?;
        if !valid_phone(&number) {
            return Err(invalid(
                "phone.phone: a phone number: digits, optionally a leading +, spaces, dashes, dots or parentheses",
            ));
        }
        contacts.push(NewContact {
            kind: ContactKind::Phone,
            address: number,
            verified,
        });
    }
    let login_name = LoginName::parse(request.username.take().unwrap_or(email))?;
    let organization_id = match request.organization.take().and_then(|o| o.org) {
        None => None,
        Some(msg::organization::Org::OrgId(id)) => Some(text(id, "organization.orgId")?),
        Some(msg::organization::Org::OrgDomain(_)) => {
            return Err(invalid(
                "organization.orgDomain: not supported by this server; name the orgId",
            ));
        }
    };
    let password = match request.password_type.take() {
        None => None,
        Some(msg::add_human_user_request::PasswordType::Password(p)) => {
            Some(Password::parse_new(p.password)?)
        }
        Some(msg::add_human_user_request::PasswordType::HashedPassword(_)) => {
            return Err(invalid("hashedPassword: not supported by this server"));
        }
    };
    Ok((
        NewUser {
            login_name,
            display_name: Some(display_name),
            organization_id,
            password,
        },
        contacts,
    ))
}

/// A phone number as people write it: an optional leading `+`, then 4 to 20 digits with
/// spaces, dashes, dots or parentheses between them.
fn valid_phone(number: &str) -> bool {
    let body = number.strip_prefix('+').unwrap_or(number);
    let digits = body.chars().filter(char::is_ascii_digit).count();
    (4..=20).contains(&digits)
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
}

impl SessionApi {
    pub async fn add_human_user(
        &self,
        principal: Principal,
        mut request: msg::AddHumanUserRequest,
    ) -> Result<msg::AddHumanUserResponse, Error> {
        let (new, contacts) = new_human(&mut request)?;
        let totp_seed = request
            .totp_secret
            .map(|s| ImportedSeed::parse(&text(s, "totpSecret")?))
            .transpose()?;
        let user = self
            .core()
            .create_human(&principal, new, &contacts, totp_seed.as_ref())
            .await?;
        Ok(msg::AddHumanUserResponse {
            user_id: user.id.as_str().to_owned(),
            details: Some(object::Details {
                sequence: user.version,
                change_date: Some(user.created_at.into()),
                resource_owner: user.organization_id.clone(),
                creation_date: Some(user.created_at.into()),
            }),
            email_code: None,
            phone_code: None,
        })
    }

    pub async fn register_totp(
        &self,
        principal: Principal,
        request: msg::RegisterTotpRequest,
    ) -> Result<msg::RegisterTotpResponse, Error> {
        let user = user_id(request.user_id)?;
        let enrollment = self.core().register_totp(&principal, &user).await?;
        Ok(msg::RegisterTotpResponse {
            details: Some(details(&enrollment.change.details)),
            uri: enrollment.uri,
            secret: enrollment.secret,
        })
    }

    pub async fn verify_totp_registration(
        &self,
        principal: Principal,
        request: msg::VerifyTotpRegistrationRequest,
    ) -> Result<msg::VerifyTotpRegistrationResponse, Error> {
        let user = user_id(request.user_id)?;
        let code = TotpCode::parse(request.code)?;
        let change = self
            .core()
            .verify_totp_registration(&principal, &user, &code, true)
            .await?;
        Ok(msg::VerifyTotpRegistrationResponse {
            details: Some(details(&change.details)),
        })
    }

    pub async fn remove_totp(
        &self,
        principal: Principal,
        request: msg::RemoveTotpRequest,
    ) -> Result<msg::RemoveTotpResponse, Error> {
        let user = user_id(request.user_id)?;
        let change = self
            .core()
            .remove_factor(&principal, &user, crate::domain::FactorKind::Totp, true)
            .await?;
        Ok(msg::RemoveTotpResponse {
            details: Some(details(&change.details)),
        })
    }

    pub async fn generate_recovery_codes(
        &self,
        principal: Principal,
        request: msg::GenerateRecoveryCodesRequest,
    ) -> Result<msg::GenerateRecoveryCodesResponse, Error> {
        let user = user_id(request.user_id)?;
        let (codes, change) = self
            .core()
            .generate_recovery_codes(&principal, &user, i64::from(request.count), true)
            .await?;
        Ok(msg::GenerateRecoveryCodesResponse {
            details: Some(details(&change.details)),
            recovery_codes: codes,
        })
    }

    pub async fn remove_recovery_codes(
        &self,
        principal: Principal,
        request: msg::RemoveRecoveryCodesRequest,
    ) -> Result<msg::RemoveRecoveryCodesResponse, Error> {
        let user = user_id(request.user_id)?;
        let change = self
            .core()
            .remove_factor(
                &principal,
                &user,
                crate::domain::FactorKind::RecoveryCodes,
                true,
            )
            .await?;
        Ok(msg::RemoveRecoveryCodesResponse {
            details: Some(details(&change.details)),
        })
    }

    pub async fn add_otpsms(
        &self,
        principal: Principal,
        request: msg::AddOtpsmsRequest,
    ) -> Result<msg::AddOtpsmsResponse, Error> {
        let change = self
            .change_otp(principal, request.user_id, FactorKind::OtpSms, true)
            .await?;
        Ok(msg::AddOtpsmsResponse {
            details: Some(details(&change.details)),
        })
    }

    pub async fn remove_otpsms(
        &self,
        principal: Principal,
        request: msg::RemoveOtpsmsRequest,
    ) -> Result<msg::RemoveOtpsmsResponse, Error> {
        let change = self
            .change_otp(principal, request.user_id, FactorKind::OtpSms, false)
            .await?;
        Ok(msg::RemoveOtpsmsResponse {
            details: Some(details(&change.details)),
        })
    }

    pub async fn add_otp_email(
        &self,
        principal: Principal,
        request: msg::AddOtpEmailRequest,
    ) -> Result<msg::AddOtpEmailResponse, Error> {
        let change = self
            .change_otp(principal, request.user_id, FactorKind::OtpEmail, true)
            .await?;
        Ok(msg::AddOtpEmailResponse {
            details: Some(details(&change.details)),
        })
    }

    pub async fn remove_otp_email(
        &self,
        principal: Principal,
        request: msg::RemoveOtpEmailRequest,
    ) -> Result<msg::RemoveOtpEmailResponse, Error> {
        let change = self
            .change_otp(principal, request.user_id, FactorKind::OtpEmail, false)
            .await?;
        Ok(msg::RemoveOtpEmailResponse {
            details: Some(details(&change.details)),
        })
    }

    /// Adds or removes one-time codes of one kind; either ends the user's other sessions.
    async fn change_otp(
        &self,
        principal: Principal,
        user: String,
        kind: FactorKind,
        add: bool,
    ) -> Result<crate::core::FactorChange, Error> {
        let user = user_id(user)?;
        let core = self.core();
        if add {
            core.add_otp(&principal, &user, kind, true).await
        } else {
            core.remove_factor(&principal, &user, kind, true).await
        }
    }

    pub async fn list_authentication_method_types(
        &self,
        principal: Principal,
        request: msg::ListAuthenticationMethodTypesRequest,
    ) -> Result<msg::ListAuthenticationMethodTypesResponse, Error> {
        let user = user_id(request.user_id)?;
        if let Some(query) = request.domain_query {
            text(query.domain, "domainQuery.domain")?;
        }
        let methods = self.core().auth_methods(&principal, &user).await?;
        Ok(msg::ListAuthenticationMethodTypesResponse {
            details: Some(object::ListDetails {
                total_result: methods.len() as u64,
                processed_sequence: 0,
                timestamp: Some(self.core().now().into()),
            }),
            auth_method_types: methods.into_iter().map(method_type).collect(),
        })
    }
}

/// Passkeys: RegisterPasskey answers the options of `credentials.create` (a registration
/// code is refused: this server makes no registration links; the authenticator kind is
/// accepted and not enforced), VerifyPasskeyRegistration stores the credential, ListPasskeys
/// and RemovePasskey show and delete them.
impl SessionApi {
    pub async fn register_passkey(
        &self,
        principal: Principal,
        request: msg::RegisterPasskeyRequest,
    ) -> Result<msg::RegisterPasskeyResponse, Error> {
        let user = user_id(request.user_id)?;
        if request.code.is_some() {
            return Err(invalid(
                "code: registration links are not supported by this server",
            ));
        }
        if msg::PasskeyAuthenticator::try_from(request.authenticator).is_err() {
            return Err(invalid(
                "authenticator: value must be one of the defined enum values",
            ));
        }
        if !request.domain.is_empty() {
            text(request.domain.clone(), "domain")?;
        }
        let start = self
            .core()
            .register_passkey(&principal, &user, &request.domain)
            .await?;
        Ok(msg::RegisterPasskeyResponse {
            details: Some(details(&start.change.details)),
            passkey_id: start.passkey_id,
            public_key_credential_creation_options: Some(super::convert::json_struct(
                start.options,
            )?),
        })
    }

    pub async fn verify_passkey_registration(
        &self,
        principal: Principal,
        request: msg::VerifyPasskeyRegistrationRequest,
    ) -> Result<msg::VerifyPasskeyRegistrationResponse, Error> {
        let user = user_id(request.user_id)?;
        let passkey_id = text(request.passkey_id, "passkeyId")?;
        let credential = request
            .public_key_credential
            .ok_or_else(|| invalid("publicKeyCredential: required"))?;
        let answer = PasskeyAttestation::parse(super::convert::struct_json(credential)?)?;
        let name = text(request.passkey_name, "passkeyName")?;
        let change = self
            .core()
            .verify_passkey_registration(&principal, &user, &passkey_id, &answer, name, true)
            .await?;
        Ok(msg::VerifyPasskeyRegistrationResponse {
            details: Some(details(&change.details)),
        })
    }

    pub async fn list_passkeys(
        &self,
        principal: Principal,
        request: msg::ListPasskeysRequest,
    ) -> Result<msg::ListPasskeysResponse, Error> {
        let user = user_id(request.user_id)?;
        let passkeys = self.core().list_passkeys(&principal, &user).await?;
        Ok(msg::ListPasskeysResponse {
            details: Some(object::ListDetails {
                total_result: passkeys.len() as u64,
                processed_sequence: 0,
                timestamp: Some(self.core().now().into()),
            }),
            result: passkeys
                .into_iter()
                .map(|p| msg::Passkey {
                    id: p.id,
                    state: msg::AuthFactorState::Ready as i32,
                    name: p.name,
                })
                .collect(),
        })
    }

    pub async fn remove_passkey(
        &self,
        principal: Principal,
        request: msg::RemovePasskeyRequest,
    ) -> Result<msg::RemovePasskeyResponse, Error> {
        let user = user_id(request.user_id)?;
        let passkey_id = text(request.passkey_id, "passkeyId")?;
        let change = self
            .core()
            .remove_passkey(&principal, &user, &passkey_id, true)
            .await?;
        Ok(msg::RemovePasskeyResponse {
            details: Some(details(&change.details)),
        })
    }
}

/// Handlers of the declared methods this server does not implement.
macro_rules! unimplemented_methods {
    ($($handler:ident: $method:literal, $req:ident -> $resp:ident;)+) => {
        impl SessionApi {
            $(
                pub async fn $handler(
                    &self,
                    _principal: Principal,
                    _request: msg::$req,
                ) -> Result<msg::$resp, Error> {
                    Err(unimplemented($method))
                }
            )+
        }
    };
}

unimplemented_methods! {
    create_passkey_registration_link: "CreatePasskeyRegistrationLink", CreatePasskeyRegistrationLinkRequest -> CreatePasskeyRegistrationLinkResponse;
}

rpc_service! {
    pub mod v2 {
        service "zitadel.user.v2.UserService", label "user.v2", rest "/v2", root "/users",
        messages crate::faces::pb::zitadel::user::v2,
        server user_service_server::{UserService, UserServiceServer},
        call [direct],
    }
    AddHumanUser(add_human_user): AddHumanUserRequest -> AddHumanUserResponse
        = Post "/users/human" body, OK;
    RegisterTOTP(register_totp): RegisterTotpRequest -> RegisterTotpResponse
        = Post "/users/{user_id}/totp" body, OK;
    VerifyTOTPRegistration(verify_totp_registration): VerifyTotpRegistrationRequest -> VerifyTotpRegistrationResponse
        = Post "/users/{user_id}/totp/verify" body, OK;
    RemoveTOTP(remove_totp): RemoveTotpRequest -> RemoveTotpResponse
        = Delete "/users/{user_id}/totp", OK;
    AddOTPSMS(add_otpsms): AddOtpsmsRequest -> AddOtpsmsResponse
        = Post "/users/{user_id}/otp_sms" body, OK;
    RemoveOTPSMS(remove_otpsms): RemoveOtpsmsRequest -> RemoveOtpsmsResponse
        = Delete "/users/{user_id}/otp_sms", OK;
    AddOTPEmail(add_otp_email): AddOtpEmailRequest -> AddOtpEmailResponse
        = Post "/users/{user_id}/otp_email" body, OK;
    RemoveOTPEmail(remove_otp_email): RemoveOtpEmailRequest -> RemoveOtpEmailResponse
        = Delete "/users/{user_id}/otp_email", OK;
    RegisterPasskey(register_passkey): RegisterPasskeyRequest -> RegisterPasskeyResponse
        = Post "/users/{user_id}/passkeys" body, OK;
    VerifyPasskeyRegistration(verify_passkey_registration): VerifyPasskeyRegistrationRequest -> VerifyPasskeyRegistrationResponse
        = Post "/users/{user_id}/passkeys/{passkey_id}" body, OK;
    CreatePasskeyRegistrationLink(create_passkey_registration_link): CreatePasskeyRegistrationLinkRequest -> CreatePasskeyRegistrationLinkResponse
        = Post "/users/{user_id}/passkeys/registration_link" body, OK;
    ListPasskeys(list_passkeys): ListPasskeysRequest -> ListPasskeysResponse
        = Post "/users/{user_id}/passkeys/_search" body, OK;
    RemovePasskey(remove_passkey): RemovePasskeyRequest -> RemovePasskeyResponse
        = Delete "/users/{user_id}/passkeys/{passkey_id}", OK;
    ListAuthenticationMethodTypes(list_authentication_method_types): ListAuthenticationMethodTypesRequest -> ListAuthenticationMethodTypesResponse
        = Get "/users/{user_id}/authentication_methods", OK;
    GenerateRecoveryCodes(generate_recovery_codes): GenerateRecoveryCodesRequest -> GenerateRecoveryCodesResponse
        = Post "/users/{user_id}/recovery_codes" body, OK;
    RemoveRecoveryCodes(remove_recovery_codes): RemoveRecoveryCodesRequest -> RemoveRecoveryCodesResponse
        = Delete "/users/{user_id}/recovery_codes", OK;
}
