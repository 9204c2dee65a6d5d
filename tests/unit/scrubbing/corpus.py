"""The secret corpus: one row per secret shape, each with a near-miss that must stay unchanged.

Fake secrets are generated from fixed seeds rather than written out, so the source holds no
string that a secret scanner (or a reader) would take for a live credential.
"""

from __future__ import annotations

import base64
import random
import string
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def fake(alphabet: str, n: int, seed: str) -> str:
    """A deterministic pseudo-random string; always holds a digit and a letter when it can."""
    rng = random.Random(seed)
    s = "".join(rng.choice(alphabet) for _ in range(n))
    if n >= 4 and any(c.isdigit() for c in alphabet) and not any(c.isdigit() for c in s):
        s = s[:-1] + "7"
    return s


def luhn_complete(partial: str) -> str:
    """`partial` plus the Luhn check digit (written independently of the module under test)."""
    total = 0
    for i, ch in enumerate(reversed(partial + "0")):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return partial + str((10 - total % 10) % 10)


def pem_body(seed: str, lines: int = 5) -> str:
    return "\n".join(fake(B64, 64, f"{seed}-{i}") for i in range(lines)) + "\n" + fake(B64, 22, seed) + "=="


def b64url(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def mask(kind: str) -> str:
    return f"[REDACTED:{kind}]"


@dataclass(frozen=True)
class Shape:
    id: str
    kind: str
    before: str
    secret: str
    after: str
    near_miss: str
    # Other secrets in `before` or `after` that are masked too: (the secret, its kind).
    also_masked: tuple[tuple[str, str], ...] = ()

    @property
    def text(self) -> str:
        return self.before + self.secret + self.after

    @property
    def expected(self) -> str:
        before, after = self.before, self.after
        for secret, kind in self.also_masked:
            before, after = before.replace(secret, mask(kind)), after.replace(secret, mask(kind))
        return before + mask(self.kind) + after


JWT = (
    b64url('{"alg":"HS256","typ":"JWT"}')
    + "."
    + b64url('{"sub":"1234567890","name":"Jo Doe","iat":1516239022}')
    + "."
    + fake(URLSAFE, 43, "jwt")
)
PUBLIC_PEM = "-----BEGIN PUBLIC KEY-----\n" + pem_body("pub") + "\n-----END PUBLIC KEY-----"
CERT_PEM = "-----BEGIN CERTIFICATE-----\n" + pem_body("cert", 8) + "\n-----END CERTIFICATE-----"
GCP_PEM_ESCAPED = (
    "-----BEGIN PRIVATE KEY-----\\n" + pem_body("gcp").replace("\n", "\\n") + "\\n-----END PRIVATE KEY-----\\n"
)
UUID = "123e4567-e89b-12d3-a456-426614174000"
GIT_SHA = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
# A Luhn-valid 16-digit number that starts like today's epoch microseconds: not a card.
EPOCH_MICROS_LUHN = luhn_complete("173281234567890")
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

S = Shape
SHAPES: tuple[Shape, ...] = (
    # --- private keys -----------------------------------------------------------------------
    S(
        "pem-rsa",
        "private_key",
        "ssl: cannot load key\n-----BEGIN RSA PRIVATE KEY-----\n",
        pem_body("rsa"),
        "\n-----END RSA PRIVATE KEY-----\nretrying",
        PUBLIC_PEM,
    ),
    S(
        "pem-ec",
        "private_key",
        "-----BEGIN EC PRIVATE KEY-----\n",
        pem_body("ec", 2),
        "\n-----END EC PRIVATE KEY-----",
        CERT_PEM,
    ),
    S(
        "pem-openssh",
        "private_key",
        "key=\n-----BEGIN OPENSSH PRIVATE KEY-----\n",
        pem_body("ossh", 6),
        "\n-----END OPENSSH PRIVATE KEY-----\n",
        "authorized_keys: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + fake(B64, 43, "edpub") + " deploy@ci",
    ),
    S(
        "pem-pkcs8",
        "private_key",
        "-----BEGIN PRIVATE KEY-----\r\n",
        pem_body("p8").replace("\n", "\r\n"),
        "\r\n-----END PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY----- marker documentation only -----END",
    ),
    S(
        "pem-pkcs8-encrypted",
        "private_key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\n",
        pem_body("enc"),
        "\n-----END ENCRYPTED PRIVATE KEY-----",
        "no private key configured for tls",
    ),
    S(
        "pem-truncated",
        "private_key",
        "ValueError: bad key '-----BEGIN RSA PRIVATE KEY-----\n",
        fake(B64, 64, "cut") + "\n" + fake(B64, 30, "cut2"),
        "",
        "ValueError: bad key ''",
    ),
    S(
        "pem-pgp",
        "private_key",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n",
        "Version: GnuPG v2\n\n" + pem_body("pgp"),
        "\n-----END PGP PRIVATE KEY BLOCK-----",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n" + pem_body("pgppub") + "\n-----END PGP PUBLIC KEY BLOCK-----",
    ),
    S(
        "gcp-service-account-json",
        "private_key",
        '{"type": "service_account", "private_key_id": "' + GIT_SHA + '", "private_key": "',
        GCP_PEM_ESCAPED,
        '", "client_email": "svc@proj.iam.gserviceaccount.com"}',
        '{"type": "service_account", "private_key_id": "' + GIT_SHA + '"}',
    ),
    S(
        "putty-ppk",
        "private_key",
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nPublic-Lines: 1\n"
        + fake(B64, 64, "ppkpub")
        + "\nPrivate-Lines: 1\n",
        fake(B64, 44, "ppk"),
        "\nPrivate-MAC: " + fake(HEX, 64, "mac"),
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nPublic-Lines: 1\n" + fake(B64, 64, "ppkpub"),
    ),
    # --- HTTP auth and tokens -----------------------------------------------------------------
    S("jwt", "jwt", "invalid signature for ", JWT, " (kid=k1)", "header eyJhbGciOiJIUzI1NiJ9 is not a token"),
    S(
        "bearer-header",
        "bearer_token",
        "Authorization: Bearer ",
        fake(URLSAFE + ".~", 40, "bearer"),
        "\r\nAccept: */*",
        "Authorization: Bearer\r\nAccept: */*",
    ),
    S(
        "bearer-json-lowercase",
        "bearer_token",
        '{"headers": {"authorization": "bearer ',
        fake(ALNUM, 32, "bearer2"),
        '"}}',
        '{"error": "Bearer authentication failed"}',
    ),
    S(
        "basic-auth",
        "basic_auth",
        "Authorization: Basic ",
        base64.b64encode(b"svc-deploy:" + fake(ALNUM, 20, "basic").encode()).decode(),
        "",
        "Basic auth is disabled for this endpoint",
    ),
    S(
        "authorization-token-scheme",
        "authorization",
        "Authorization: Token ",
        fake(HEX, 40, "authz"),
        "",
        "authorization failed for user alice",
    ),
    S(
        "url-password-postgres",
        "url_password",
        "could not connect to postgres://app:",
        fake(ALNUM, 16, "pg"),
        "@db.internal:5432/orders",
        "could not connect to postgres://app@db.internal:5432/orders",
    ),
    S(
        "url-password-redis-no-user",
        "url_password",
        "redis://:",
        fake(ALNUM, 24, "redis"),
        "@cache:6379/0",
        "redis://cache:6379/0",
    ),
    S(
        "url-password-unencoded-at",
        "url_password",
        "amqp://guest:",
        "p@ss:w0rd",
        "@mq.local/vhost",
        "http://mq.local:15672/#/queues?email=ops@example.com",
    ),
    S(
        "url-password-git-https",
        "url_password",
        "git clone https://deploy:",
        fake(ALNUM, 40, "gitpw"),
        "@github.com/org/repo.git",
        "git clone https://github.com/org/repo.git",
    ),
    S(
        "url-password-with-slash",
        "url_password",
        "postgres://app:",
        "pa/ss" + fake(ALNUM, 8, "pwslash"),
        "@db.internal:5432/orders",
        "https://github.com:443/org/repo@v1.2",
    ),
    S(
        "url-password-with-hash",
        "url_password",
        "redis://default:",
        "pw#" + fake(ALNUM, 10, "pwhash"),
        "@cache:6379",
        "http://cache:6379/#/keys?owner=ops@example.com",
    ),
    S(
        "url-password-with-question-mark",
        "url_password",
        "amqp://svc:",
        "wh?at" + fake(ALNUM, 6, "pwq"),
        "@mq/vhost",
        "amqp://mq:5672?heartbeat=30",
    ),
    S(
        "url-token-as-user",
        "url_token",
        "git clone https://",
        fake(HEX, 40, "ghuser"),
        "@github.com/org/repo.git",
        "git clone https://deploy-bot@github.com/org/repo.git",
    ),
    # --- headers ------------------------------------------------------------------------------
    S(
        "cookie-header",
        "cookie",
        "GET / HTTP/1.1\r\nCookie: ",
        "sessionid=" + fake(ALNUM, 24, "cookie") + "; csrftoken=" + fake(ALNUM, 16, "csrf"),
        "\r\nAccept: */*",
        "we use a cookie: see the privacy page",
    ),
    S(
        "set-cookie-header",
        "cookie",
        "HTTP/1.1 200 OK\nSet-Cookie: ",
        "sid=" + fake(ALNUM, 20, "setcookie") + "; Path=/; HttpOnly",
        "\nContent-Length: 0",
        "HTTP/1.1 200 OK\nSet-Cookie:\nContent-Length: 0",
    ),
    S(
        "authorization-token-letters-only",
        "authorization",
        "Authorization: Token ",
        fake(string.ascii_letters, 24, "tokletters"),
        "",
        "Authorization: Token required",
    ),
    S(
        "bearer-letters-only-in-header",
        "bearer_token",
        "Authorization: Bearer ",
        fake(string.ascii_lowercase, 12, "bearletters"),
        "",
        "Bearer authentication failed: token expired",
    ),
    S(
        "bearer-letters-camel",
        "bearer_token",
        "curl -H 'x: Bearer ",
        "abcDefGhiJkl",
        "'",
        "the Bearer Token scheme",
    ),
    # --- cloud providers ----------------------------------------------------------------------
    S(
        "aws-access-key-id",
        "aws_access_key_id",
        "using access key ",
        "AKIAIOSFODNN7EXAMPLE",
        " for s3",
        "using access key AKIA1234",
    ),
    S(
        "aws-temporary-key-id",
        "aws_access_key_id",
        "AWS_ACCESS_KEY_ID=",
        "ASIA" + fake(UPPER_DIGITS, 16, "asia"),
        "",
        "region ASIA-PACIFIC",
    ),
    S(
        "aws-secret-access-key",
        "aws_secret_access_key",
        "[default]\naws_secret_access_key = ",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "\nregion = us-east-1",
        "AWS_SECRET_ACCESS_KEY is not set",
    ),
    S(
        "aws-secret-access-key-json",
        "aws_secret_access_key",
        '{"SecretAccessKey": "',
        fake(B64, 40, "sak"),
        '", "Expiration": "2024-11-28T12:00:00Z"}',
        '{"Expiration": "2024-11-28T12:00:00Z"}',
    ),
    S(
        "aws-secret-next-to-key-id",
        "aws_secret_access_key",
        "boto: key AKIAIOSFODNN7EXAMPLE and secret ",
        AWS_SECRET,
        " rejected",
        "boto: key AKIA1234 and commit " + GIT_SHA + " rejected",
        (("AKIAIOSFODNN7EXAMPLE", "aws_access_key_id"),),
    ),
    S(
        "aws-secret-after-label-space",
        "aws_secret_access_key",
        "aws configure set aws_secret_access_key ",
        AWS_SECRET,
        "",
        "aws configure set aws_secret_access_key_file /run/secrets/aws",
    ),
    S(
        "aws-secret-after-secret-key",
        "aws_secret_access_key",
        "secret_key ",
        AWS_SECRET,
        " (from env)",
        "secret_key " + GIT_SHA + " (from env)",
    ),
    S(
        "aws-secret-after-SecretAccessKey",
        "aws_secret_access_key",
        "sts: {AccessKeyId: ASIA" + "X" * 16 + ", SecretAccessKey ",
        AWS_SECRET,
        "}",
        "sts: no SecretAccessKey in the answer",
        (("ASIA" + "X" * 16, "aws_access_key_id"),),
    ),
    S(
        "aws-session-token",
        "aws_session_token",
        '{"SessionToken": "',
        "IQoJb3JpZ2luX2Vj" + fake(B64, 300, "sts"),
        '"}',
        "IQoJb3JpZ2luX2Vj is a prefix",
    ),
    S(
        "gcp-api-key",
        "gcp_api_key",
        "GET https://maps.googleapis.com/maps/api/geocode/json?address=x&key=",
        "AIza" + fake(URLSAFE, 35, "gcp"),
        " 403",
        "GET https://maps.googleapis.com/maps/api/geocode/json?address=x&key=AIzaShort123 403",
    ),
    S(
        "google-oauth-client-secret",
        "google_oauth_client_secret",
        '{"client_id": "1234567890-abcdef.apps.googleusercontent.com", "client_secret": "',
        "GOCSPX-" + fake(URLSAFE, 28, "gocspx"),
        '"}',
        '{"client_id": "1234567890-abcdef.apps.googleusercontent.com"}',
    ),
    S(
        "google-oauth-access-token",
        "google_oauth_token",
        "token rejected: ",
        "ya29." + fake(URLSAFE, 80, "ya29"),
        "",
        "ya29 is a lint code",
    ),
    S(
        "azure-storage-account-key",
        "azure_storage_account_key",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=",
        fake(B64, 86, "azsa") + "==",
        ";EndpointSuffix=core.windows.net",
        "DefaultEndpointsProtocol=https;AccountName=acct;EndpointSuffix=core.windows.net",
    ),
    S(
        "azure-shared-access-key",
        "azure_shared_access_key",
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=",
        fake(B64, 43, "azsb") + "=",
        "",
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey",
    ),
    S(
        "azure-sas-signature",
        "azure_sas_signature",
        "GET https://acct.blob.core.windows.net/c/b.txt?sv=2022-11-02&sp=r&se=2024-12-01T00:00:00Z&sig=",
        fake(ALNUM, 40, "sas") + "%3D",
        " 403",
        "GET https://acct.blob.core.windows.net/c/b.txt?sv=2022-11-02&sp=r&sig=short 403",
    ),
    S(
        "azure-client-secret",
        "azure_client_secret",
        "credential rejected: ",
        fake(ALNUM, 3, "azcs") + "8Q~" + fake(ALNUM + "_~.-", 34, "azcs2"),
        "",
        "version 1.2Q~3 released",
    ),
    # --- developer platforms ------------------------------------------------------------------
    S("github-ghp", "github_token", "token=", "ghp_" + fake(ALNUM, 36, "ghp"), "", "ghp_short is not a token"),
    S("github-gho", "github_token", "oauth: ", "gho_" + fake(ALNUM, 36, "gho"), "", "gho_home=/srv"),
    S("github-ghs", "github_token", "GITHUB_TOKEN=", "ghs_" + fake(ALNUM, 36, "ghs"), "", "ghs_" + "x" * 10),
    S("github-ghu", "github_token", "user-to-server ", "ghu_" + fake(ALNUM, 36, "ghu"), ".", "see the ghu_docs page"),
    S(
        "github-fine-grained-pat",
        "github_fine_grained_pat",
        "remote: ",
        "github_pat_" + fake(ALNUM, 22, "ghpat") + "_" + fake(ALNUM, 59, "ghpat2"),
        "",
        "github_pat_short",
    ),
    S("gitlab-pat", "gitlab_token", "PRIVATE-TOKEN: ", "glpat-" + fake(URLSAFE, 20, "glpat"), "", "glpat-short"),
    S(
        "npm-token",
        "npm_token",
        "//registry.npmjs.org/:_authToken=",
        "npm_" + fake(ALNUM, 36, "npm"),
        "",
        "npm_config_cache=/tmp/npm",
    ),
    S(
        "pypi-token",
        "pypi_token",
        "password = ",
        "pypi-AgEIcHlwaS5vcmc" + fake(URLSAFE, 120, "pypi"),
        "",
        "pypi-simple-index unreachable",
    ),
    S(
        "huggingface-token",
        "huggingface_token",
        "HF_TOKEN=",
        "hf_" + fake(ALNUM, 34, "hf"),
        "",
        "hf_hub_download failed",
    ),
    S("heroku-api-key", "heroku_api_key", "heroku auth: ", "HRKU-" + fake(URLSAFE, 60, "heroku"), "", "HRKU-short"),
    S(
        "datadog-api-key",
        "datadog_api_key",
        "DD_API_KEY=",
        fake(HEX, 32, "dd"),
        "\nDD_SITE=datadoghq.com",
        "DD_API_KEY=\nDD_SITE=datadoghq.com",
    ),
    S(
        "databricks-token",
        "databricks_token",
        "token: ",
        "dapi" + fake(HEX, 32, "dapi"),
        "",
        "dapi" + fake(HEX, 16, "dapi2"),
    ),
    S(
        "digitalocean-token",
        "digitalocean_token",
        "doctl: ",
        "dop_v1_" + fake(HEX, 64, "do"),
        "",
        "dop_v1_" + fake(HEX, 32, "do2"),
    ),
    S(
        "hashicorp-vault-token",
        "hashicorp_vault_token",
        "X-Vault-Token: ",
        "hvs." + fake(URLSAFE, 90, "hvs"),
        "",
        "hvs.short",
    ),
    S(
        "new-relic-api-key",
        "new_relic_api_key",
        "NEW_RELIC_KEY ",
        "NRAK-" + fake(UPPER_DIGITS, 27, "nr"),
        "",
        "NRAK-SHORT",
    ),
    S(
        "grafana-service-account",
        "grafana_token",
        "grafana: ",
        "glsa_" + fake(ALNUM, 32, "glsa") + "_" + fake(HEX, 8, "glsa2"),
        "",
        "glsa_short",
    ),
    S(
        "postman-api-key",
        "postman_api_key",
        "x ",
        "PMAK-" + fake(HEX, 24, "pm") + "-" + fake(HEX, 34, "pm2"),
        " y",
        "PMAK-" + fake(HEX, 24, "pm"),
    ),
    S(
        "age-secret-key",
        "age_secret_key",
        "# created\n",
        "AGE-SECRET-KEY-1" + fake(BECH32, 58, "age").upper(),
        "\n",
        "recipient: age1" + fake(BECH32, 58, "agepub"),
    ),
    # --- SaaS ---------------------------------------------------------------------------------
    S(
        "slack-bot-token",
        "slack_token",
        "slack: ",
        "xoxb-" + fake("0123456789", 12, "s1") + "-" + fake("0123456789", 13, "s2") + "-" + fake(ALNUM, 24, "s3"),
        "",
        "xoxo-hugs-and-kisses",
    ),
    S(
        "slack-webhook",
        "slack_webhook",
        "POST https://hooks.slack.com/services/",
        "T" + fake(UPPER_DIGITS, 8, "sw1") + "/B" + fake(UPPER_DIGITS, 10, "sw2") + "/" + fake(ALNUM, 24, "sw3"),
        " failed",
        "see https://api.slack.com/messaging/webhooks",
    ),
    S(
        "discord-webhook",
        "discord_webhook",
        "https://discord.com/api/webhooks/123456789012345678/",
        fake(URLSAFE, 68, "discord"),
        "",
        "https://discord.com/channels/123456789012345678/987654321",
    ),
    S(
        "stripe-secret-key",
        "stripe_key",
        "stripe: ",
        "sk_" + "live_" + fake(ALNUM, 24, "sk"),
        "",
        "stripe: pk_live_" + fake(ALNUM, 24, "pk"),
    ),
    S("stripe-restricted-key", "stripe_key", "", "rk_" + "live_" + fake(ALNUM, 24, "rk"), "", "sk_live_abc"),
    S(
        "stripe-webhook-secret",
        "stripe_webhook_secret",
        "STRIPE_WEBHOOK=",
        "whsec_" + fake(ALNUM, 32, "wh"),
        "",
        "whsec_short",
    ),
    S(
        "twilio-api-key",
        "twilio_api_key",
        "twilio key ",
        "SK" + fake(HEX, 32, "tw"),
        "",
        "checksum md5=" + fake(HEX, 32, "md5"),
    ),
    S(
        "sendgrid-api-key",
        "sendgrid_api_key",
        "sendgrid: ",
        "SG." + fake(URLSAFE, 22, "sg1") + "." + fake(URLSAFE, 43, "sg2"),
        "",
        "SG.module.function",
    ),
    S(
        "shopify-token",
        "shopify_token",
        "X-Shopify-Access-Token ",
        "shpat_" + fake(HEX, 32, "shp"),
        "",
        "shpat_" + fake(HEX, 16, "shp2"),
    ),
    S(
        "openai-project-key",
        "openai_api_key",
        "Incorrect API key provided: ",
        "sk-proj-" + fake(URLSAFE, 120, "oai"),
        ".",
        "use a key with the sk- prefix",
    ),
    S(
        "openai-legacy-key",
        "openai_api_key",
        "",
        "sk-" + fake(ALNUM, 48, "oai2"),
        "",
        "sk-hynix-semiconductor-memory-division",
    ),
    S(
        "anthropic-api-key",
        "anthropic_api_key",
        "x-api-key ",
        "sk-ant-api03-" + fake(URLSAFE, 93, "ant") + "AA",
        "",
        "keys start with sk-ant- today",
    ),
    # --- key=value secrets --------------------------------------------------------------------
    S(
        "password-logfmt",
        "password",
        "login failed user=alice password=",
        "hunter2",
        " ip=10.0.0.7",
        "the password is wrong for user alice",
    ),
    S(
        "password-yaml",
        "password",
        "db:\n  host: db.internal\n  password: ",
        "s3cr3t!x",
        "\n  port: 5432",
        "db:\n  password:\n    min_length: 12",
    ),
    S(
        "password-json",
        "password",
        '{"user": "alice", "password": "',
        'hu\\"nter2',
        '"}',
        '{"user": "alice", "password": ""}',
    ),
    S(
        "password-python-repr",
        "password",
        "User(name='alice', passwd='",
        "c0rrect-h0rse",
        "')",
        "User(name='alice', passwd=None)",
    ),
    S(
        "password-connection-string",
        "password",
        "Server=db;Database=app;User Id=sa;Password=",
        "P@ssw0rd!",
        ";Encrypt=true",
        "Password Policy: at least 12 characters",
    ),
    S(
        "password-camel-case",
        "password",
        '{"oldPassword":"',
        "Tr0ub4dor&3",
        '","newPassword":null}',
        '{"passwordHint": "first pet"}',
    ),
    S(
        "password-cli-flag",
        "password",
        "exec: mysqldump --password ",
        "hunter2",
        " --all-databases",
        "exec: app --password-file /run/secrets/db",
    ),
    S("password-pwd-env", "password", "MYSQL_PWD=", "hunter2", " mysql -u root", "PWD=/home/app SHLVL=1"),
    S("password-db-pass", "password", "DB_HOST=db DB_PASS=", "hunter2x", " DB_USER=app", "DB_PASSPORT_CHECK=on"),
    S("password-pass", "password", "login user=bob pass=", "letmein9", "", "bypass=true compass=north"),
    S("password-pw", "password", "connect(host='db', pw='", "s3cr3t-pw", "')", "kpw=12 pwm=on"),
    S("password-passcode", "password", "passcode: ", "482913", "\n", "passcodes are 6 digits"),
    S(
        "password-mysql-flag",
        "password",
        "exec: mysql -h db -u root -p",
        "hunter2x",
        " orders",
        "exec: mysql -h db -u root -p orders -P 3306",
    ),
    S(
        "credentials-kv",
        "credentials",
        "credentials=",
        fake(ALNUM, 20, "creds"),
        "&next=/",
        "credentials not found in ~/.aws",
    ),
    S("apitoken-glued", "token", "GET /v1?apitoken=", fake(ALNUM, 24, "apitok"), "", "GET /v1?apitokens_enabled"),
    S("accesstoken-glued", "token", "accesstoken=", fake(ALNUM, 24, "acctok"), ";", "accesstokenlifetime=3600"),
    S(
        "clientsecret-glued",
        "secret",
        "clientsecret=",
        fake(ALNUM, 24, "clsec"),
        "&grant_type=client_credentials",
        "clientsecretexpiry=2026-01-01",
    ),
    S(
        "client-secret",
        "secret",
        "client_id=web-app&client_secret=",
        fake(URLSAFE, 24, "cs"),
        "&grant_type=client_credentials",
        "secretary=bob",
    ),
    S(
        "django-secret-key",
        "secret",
        "SECRET_KEY = '",
        "django-insecure-" + fake(ALNUM, 40, "dj"),
        "'",
        "SECRET_KEY_FILE=/run/secrets/django",
    ),
    S(
        "access-token-query",
        "token",
        "GET /cb?access_token=",
        fake(ALNUM, 32, "at"),
        "&expires_in=3600",
        "GET /cb?token=&expires_in=3600",
    ),
    S(
        "refresh-token-json",
        "token",
        '{"refresh_token": "',
        fake(URLSAFE, 40, "rt"),
        '", "token_type": "Bearer"}',
        '{"token_type": "Bearer", "expires_in": 3600}',
    ),
    S(
        "token-escaped-json",
        "token",
        '{\\"auth_token\\":\\"',
        fake(ALNUM, 24, "etok"),
        '\\"}',
        '{\\"auth_token\\":null}',
    ),
    S("auth-token-header", "token", "X-Auth-Token: ", fake(ALNUM, 32, "xat"), "", "KeyError: 'token'"),
    S("api-key-header", "api_key", "X-Api-Key: ", fake(ALNUM, 32, "xak"), "\r\nAccept: */*", "apiKeyVersion=2"),
    S(
        "api-key-query",
        "api_key",
        "GET /v1/data?apikey=",
        fake(ALNUM, 32, "qak"),
        " HTTP/1.1",
        "GET /v1/data?api_version=2024-01-01 HTTP/1.1",
    ),
    S(
        "private-key-env",
        "private_key",
        "PRIVATE_KEY=",
        "0x" + fake(HEX, 64, "eth"),
        "",
        "private_key_path=/etc/ssl/key.pem",
    ),
    # --- card numbers -------------------------------------------------------------------------
    S(
        "card-visa",
        "credit_card",
        "payment declined for card ",
        "4111111111111111",
        " (visa)",
        "payment declined for card 4111111111111112 (visa)",
    ),
    S("card-visa-spaces", "credit_card", "card=", "4111 1111 1111 1111", ";", "card=4111 1111 1111 1112;"),
    S("card-mastercard-dashes", "credit_card", "cc: ", "5555-5555-5555-4444", "", "request " + UUID),
    S("card-mastercard-2-series", "credit_card", "pan ", "2223003122003222", "", "2023-11-28 12:30:45.123456"),
    S("card-amex", "credit_card", "amex ", "3782 822463 10005", " exp 12/27", "amex 3782 822463 10006 exp 12/27"),
    S("card-discover", "credit_card", "", "6011111111111117", "", "ts=" + EPOCH_MICROS_LUHN),
    S("card-jcb", "credit_card", "order paid with ", "3530111333300000", "", "order 3530111333300001"),
    S("card-visa-13", "credit_card", "legacy ", "4222222222222", "", "legacy 4222222222223"),
    S("card-dots", "credit_card", "card ", "4111.1111.1111.1111", " declined", "version 4111.1111.1111.1112"),
    S("card-4-6-6", "credit_card", "pan ", "4111-111111-111111", "", "pan 4111-111111-111112"),
    S("card-glued-to-word", "credit_card", "card", "4111111111111111", " declined", "card4111111111111112 declined"),
    S("card-19-digits", "credit_card", "pan=", luhn_complete("601100000000000000"), "", "latency=0.4111111111111111"),
)

# The addresses in SHAPES, which PII scrubbing masks as well.
EMAILS_IN_SHAPES = ("svc@proj.iam.gserviceaccount.com", "ops@example.com")

# Personal data, masked when ERRORREPLAY_SCRUB_PII is on (the default).
PII_SHAPES: tuple[Shape, ...] = (
    S(
        "email",
        "email",
        "no account for ",
        "alice.o'neil+test@mail.example.co.uk"[9:],
        " (signup)",
        "https://user@example.com/login",
    ),
    S("email-in-json", "email", '{"user": "', "ops@example.com", '"}', "git clone git@github.com:org/repo.git"),
    S("us-ssn", "national_id", "ssn=", "123-45-6789", "", "ssn=000-45-6789 date=2024-11-28 id=900-12-3456"),
)

# Strings that look a little like secrets but are not; each must come out unchanged.
NEAR_MISSES: tuple[str, ...] = (
    "password",
    "Please enter your password",
    "token=",
    "token=&next=1",
    "secret: false",
    "token: null",
    '{"password": null, "token": ""}',
    "KeyError: 'password'",
    "request " + UUID,
    "commit " + GIT_SHA,
    "4111111111111112",
    "4111-1111-1111-1112",
    "AKIA1234",
    "AKIAIOSFODNN7EXAMPL",
    "Authorization: Bearer",
    "Bearer",
    "Bearer token missing",
    PUBLIC_PEM,
    CERT_PEM,
    "https://example.com/path?q=1#frag",
    "https://user@example.com/login",
    "http://[::1]:8080/health",
    "the sk- prefix marks secret keys; sk-learn is a library",
    "2024-11-28T12:34:56.789012Z",
    "occurred_at=" + EPOCH_MICROS_LUHN,
    "1732812345678",
    "version 1.2.3-rc.1+build.4567, grpcio==1.68.1, Python 3.11.9",
    "listening on 10.0.0.1:8080",
    "ratio=0.30000000000000004",
    "phone +4915112345678",
    "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7",
    'Traceback (most recent call last):\n  File "/app/handlers/payment.py", line 142, in charge\n'
    "    result = gateway.charge(amount)\nTimeoutError: gateway did not answer in 30s",
)
