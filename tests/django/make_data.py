"""Real Django data for vigile's migration tests (`vigile import django`).

Run with the Python of a venv made from ../shared/django_seed/requirements.txt
plus argon2-cffi and bcrypt (deploy/lib.sh `ensure_django_venv`), from any
directory:

    python make_data.py SEED_DIR OUT_DIR

It migrates a fresh SQLite database (OUT_DIR/db.sqlite3) of the seed system,
creates users through Django's own hashers (pbkdf2_sha256 at Django 5's
1,000,000 iterations and at 260,000, pbkdf2_sha1, argon2, bcrypt_sha256,
scrypt, an unusable password, an inactive account, a second role), logs
users in through the seed's own login endpoint (simplejwt issues the
tokens; Django rehashes a password to its default hasher at login, so only
accounts already on it log in there), blacklists one refresh token through the seed's logout and another
through a rotation, and writes:

- OUT_DIR/dump.json: `manage.py dumpdata accounts token_blacklist`;
- OUT_DIR/data.json: the users (id, email, password, hasher, role,
  is_active), the tokens, and the signing key.
"""

import json
import os
import sys


def main(seed_dir, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    os.environ["PEER_DB_PATH"] = os.path.join(out_dir, "db.sqlite3")
    os.environ["PEER_MAIL_DIR"] = os.path.join(out_dir, "mail")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.dont_write_bytecode = True
    sys.path.insert(0, seed_dir)

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password
    from django.core.management import call_command
    from django.test import Client

    from accounts.models import CustomUser, Role

    call_command("migrate", verbosity=0, interactive=False)
    gerant, _ = Role.objects.get_or_create(name="Gérant")

    people = [
        # (email, password, hasher, extra fields)
        ("pbkdf2@example.com", "Mot-de-passe-1!", "pbkdf2_sha256", {}),
        ("pbkdf2.260k@example.com", "Mot-de-passe-2!", "pbkdf2_sha256@260000",
         {"role": gerant, "gender": "F", "phone": "0612345678"}),
        ("sha1@example.com", "Mot-de-passe-3!", "pbkdf2_sha1", {}),
        ("argon2@example.com", "Mot-de-passe-4!", "argon2", {"gender": "H"}),
        ("bcrypt@example.com", "Mot-de-passe-5!", "bcrypt_sha256", {"role": gerant}),
        ("scrypt@example.com", "Mot-de-passe-6!", "scrypt", {}),
        ("unusable@example.com", None, "unusable", {}),
        ("inactive@example.com", "Mot-de-passe-8!", "pbkdf2_sha256", {"is_active": False}),
        # Django upgrades a hash to its default hasher at login: only these
        # (the default already) log in there.
        ("logout@example.com", "Mot-de-passe-9!", "pbkdf2_sha256", {}),
        ("rotate@example.com", "Mot-de-passe-10!", "pbkdf2_sha256", {"role": gerant}),
    ]
    users = []
    for email, password, hasher, extra in people:
        user = CustomUser.objects.create_user(
            email=email, password=password, first_name="Prénom", last_name=email.split("@")[0],
            **extra,
        )
        if hasher == "pbkdf2_sha256@260000":
            hasher_obj = PBKDF2PasswordHasher()
            user.password = hasher_obj.encode(password, hasher_obj.salt(), iterations=260000)
        elif hasher == "unusable":
            user.set_unusable_password()
        elif hasher != "pbkdf2_sha256":
            user.password = make_password(password, hasher=hasher)
        user.save()
        users.append({
            "id": user.id, "email": email, "password": password, "hasher": hasher,
            "role": user.role.name, "is_active": user.is_active,
            "encoded": user.password,
        })

    client = Client(HTTP_HOST="localhost")

    def login(email, password):
        answer = client.post("/api/accounts/login/", {"email": email, "password": password},
                             content_type="application/json")
        assert answer.status_code == 200, (answer.status_code, answer.content)
        return answer.json()

    live = login("pbkdf2@example.com", "Mot-de-passe-1!")
    logged_out = login("logout@example.com", "Mot-de-passe-9!")
    answer = client.post("/api/accounts/logout/", {"refresh": logged_out["refresh"]},
                         content_type="application/json",
                         HTTP_AUTHORIZATION="Bearer " + logged_out["access"])
    assert answer.status_code == 205, (answer.status_code, answer.content)
    rotated = login("rotate@example.com", "Mot-de-passe-10!")
    answer = client.post("/api/accounts/refresh-token/", {"refresh": rotated["refresh"]},
                         content_type="application/json")
    assert answer.status_code == 200, (answer.status_code, answer.content)
    after_rotation = answer.json()
    inactive = CustomUser.objects.get(email="inactive@example.com")
    inactive.is_active = True
    inactive.save()
    of_inactive = login("inactive@example.com", "Mot-de-passe-8!")
    inactive.is_active = False
    inactive.save()

    tokens = {
        "live_refresh": live["refresh"],
        "live_access": live["access"],
        "logged_out_refresh": logged_out["refresh"],
        "rotated_away_refresh": rotated["refresh"],
        "after_rotation_refresh": after_rotation["refresh"],
        "inactive_refresh": of_inactive["refresh"],
    }
    with open(os.path.join(out_dir, "dump.json"), "w", encoding="utf-8") as out:
        call_command("dumpdata", "accounts", "token_blacklist", indent=1, stdout=out)
    for entry in users:
        entry["encoded"] = CustomUser.objects.get(id=entry["id"]).password
        assert entry["hasher"] == "unusable" or entry["encoded"].startswith(
            entry["hasher"].split("@")[0] + "$"), entry
    with open(os.path.join(out_dir, "data.json"), "w", encoding="utf-8") as out:
        json.dump({"users": users, "tokens": tokens, "signing_key": settings.SECRET_KEY}, out,
                  ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
