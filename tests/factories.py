import factory
from django.contrib.auth.models import Group

from members.models import Member, StaffUser, Store, Tag
from members.services.membership import generate_member_no, generate_referral_code

PASSWORD = "correct horse battery"  # every staff user's


class StoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Store
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"S{n:03d}")
    name = factory.LazyAttribute(lambda store: f"Store {store.code}")
    city = "上海"


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"tag-{n}")
    name = factory.LazyAttribute(lambda tag: tag.code.title())


class MemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Member

    member_no = factory.LazyFunction(generate_member_no)
    referral_code = factory.LazyFunction(generate_referral_code)
    phone = factory.Sequence(lambda n: f"+86139{n:08d}")
    name = factory.Faker("name", locale="zh_CN")
    home_store = factory.SubFactory(StoreFactory)


class StaffUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StaffUser
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if extracted:
            self.groups.add(Group.objects.get_or_create(name=extracted)[0])

    @factory.post_generation
    def stores(self, create, extracted, **kwargs):
        if extracted:
            self.stores.set(extracted)
        self.save()
