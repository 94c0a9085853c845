-- OpenID Connect sign-in: started sign-ins (state → nonce, PKCE verifier), single use.
-- Only a hash of the state is stored; a row is deleted when its callback arrives, so a
-- replayed callback finds nothing.
CREATE TABLE oidc_logins (
    state_hash    text PRIMARY KEY,
    nonce         text NOT NULL,
    verifier      text NOT NULL,
    next          text NOT NULL,
    redirect_uri  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX oidc_logins_created ON oidc_logins (created_at);

-- Who signed in through the provider on which enrolled tablet, and when: such staff may come
-- back to that tablet with their PIN within the shift (api.session_hours).
CREATE TABLE tablet_sso_signins (
    tablet_id  uuid NOT NULL REFERENCES tablets (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id),
    at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tablet_id, user_id)
);
