"""Strings of Django's own admin and auth that Django 5.2's Simplified Chinese catalogue does not translate (they
are newer than its last translation: the admin index's hidden column headers, the login page's hints). Marked here,
never called, so that `make messages` puts them into loyalty's catalogue, which fills the gaps at run time: gettext
looks a string up in every installed catalogue. Drop an entry once Django's catalogue has it."""

from django.utils.translation import gettext_noop, ngettext_lazy

DJANGO_ADMIN_GAPS = [
    gettext_noop("Model name"),
    gettext_noop("Add link"),
    gettext_noop("Change or view list link"),
    gettext_noop("After you’ve created a user, you’ll be able to edit more user options."),
    gettext_noop("Error:"),
    gettext_noop("Forgotten your login credentials?"),
    gettext_noop("In case you’ve forgotten, you are:"),
    gettext_noop("%(model)s instance with %(field)s %(value)r is not a valid choice."),
]
PASSWORD_TOO_SHORT = ngettext_lazy(
    "This password is too short. It must contain at least %d character.",
    "This password is too short. It must contain at least %d characters.",
    "min_length",
)
