/* placeholder */ typedef int sdc__placeholder_ops_ref;
