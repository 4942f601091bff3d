"""Device credentials (tokens hashed, PSKs and OSCORE secrets sealed) and OSCORE replay windows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from preservarium.db.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_credentials",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("auth", sa.String(16), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=True),
        sa.Column("sealed_secret", sa.Text(), nullable=True),
        sa.Column("secret_key_id", sa.String(16), nullable=True),
        sa.Column("oscore_kid", sa.String(16), nullable=True),
        sa.Column("oscore_recipient_id", sa.String(16), nullable=True),
        sa.Column("oscore_master_salt", sa.String(64), nullable=True),
        sa.Column("oscore_algorithm", sa.String(32), nullable=True),
        sa.Column("oscore_hkdf", sa.String(16), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_authenticated_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name="fk_device_credentials_device_id_devices",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", name="pk_device_credentials"),
    )
    op.create_index(
        "ix_device_credentials_oscore_kid", "device_credentials", ["oscore_kid"], unique=True
    )
    op.create_table(
        "oscore_replay_windows",
        sa.Column("kid", sa.String(16), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("floor", sa.BigInteger(), nullable=False),
        sa.Column("bitmap", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["device_credentials.device_id"],
            name="fk_oscore_replay_windows_device_id_device_credentials",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("kid", name="pk_oscore_replay_windows"),
    )
    op.create_index("ix_oscore_replay_windows_device_id", "oscore_replay_windows", ["device_id"])


def downgrade() -> None:
    op.drop_index("ix_oscore_replay_windows_device_id", table_name="oscore_replay_windows")
    op.drop_table("oscore_replay_windows")
    op.drop_index("ix_device_credentials_oscore_kid", table_name="device_credentials")
    op.drop_table("device_credentials")
