"""Makes the Django data of the import benchmark (benches/import.sh).

    python import_data.py SEED_DIR OUT_DIR USERS

A fresh SQLite database of the seed system (../shared/django_seed) gets
USERS users through Django's own ORM (`bulk_create`, 5,000 at a time), their
password hashes made by Django's own hashers: a pool of real hashes (40
pbkdf2_sha256 at Django 5's 1,000,000 iterations, 5 argon2, 5 bcrypt_sha256)
given out in turn, since hashing 100,000 passwords at a million iterations
would take the better part of a day; an import copies the strings and never
recomputes them, so its work does not depend on which hash a user has. Two
roles, every 50th user inactive, phones and genders set on some. Then
Django's own `dumpdata accounts token_blacklist` writes OUT_DIR/dump.json.
"""

import os
import sys
import time


def main(seed_dir, out_dir, users):
    os.makedirs(out_dir, exist_ok=True)
    os.environ["PEER_DB_PATH"] = os.path.join(out_dir, "db.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.dont_write_bytecode = True
    sys.path.insert(0, seed_dir)
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command
    from django.utils import timezone

    from accounts.models import CustomUser, Role

    started = time.monotonic()
    call_command("migrate", verbosity=0, interactive=False)
    visiteur, _ = Role.objects.get_or_create(name="Visiteur")
    gerant, _ = Role.objects.get_or_create(name="Gérant")
    pool = [make_password(f"Mot-de-passe-{i}!") for i in range(40)]
    pool += [make_password(f"Mot-de-passe-a{i}!", hasher="argon2") for i in range(5)]
    pool += [make_password(f"Mot-de-passe-b{i}!", hasher="bcrypt_sha256") for i in range(5)]
    now = timezone.now()
    batch = []
    for n in range(1, users + 1):
        batch.append(CustomUser(
            email=f"user{n}@example.com", password=pool[n % len(pool)],
            first_name="Prénom", last_name=f"Nom{n}",
            gender=("H", "F", None)[n % 3], phone=f"06{n:08d}" if n % 2 else None,
            role=gerant if n % 10 == 0 else visiteur, is_active=n % 50 != 0,
            date_joined=now, last_login=now if n % 4 == 0 else None,
        ))
        if len(batch) == 5000:
            CustomUser.objects.bulk_create(batch)
            batch = []
    if batch:
        CustomUser.objects.bulk_create(batch)
    with open(os.path.join(out_dir, "dump.json"), "w", encoding="utf-8") as out:
        call_command("dumpdata", "accounts", "token_blacklist", stdout=out)
    print(f"{users} users made and dumped in {time.monotonic() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), int(sys.argv[3]))
