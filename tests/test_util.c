/* placeholder */ typedef int sdc__placeholder_tu;
